"""How far to trust one answer: an image against the test images of the model's own task.

A photo of a cat given to a model of clothing scenes still gets a top-1 class. A shipped model's reference
(`reference.json` in its entry, written by `python -m petl_core.caution` from its weights) holds what the model does
on the first `REFERENCE_IMAGES` test images of its task: each image's top-1 confidence and whether that answer was
right; the range of the model input's mean and spread; and where the images' features (what the classifier reads)
lie: each class's mean and the inverse of their pooled covariance, with the Mahalanobis distance to the nearest
class mean that 99% of the images stay within (Lee et al., 2018: a standard test of "unlike the training data").
`python -m petl_core.caution --measure` prints how often it flags more test images of the model's task (false
alarms: 1.0-1.4% for the scenes and Fashion-MNIST models, 3-6% for the digit models, whose references rest on 398
images) and test images of another task (60-63% of digit scenes given to the clothing-scenes ConViTs, 24% to the
DeiT; 63% of digits given to the Fashion-MNIST ConViT). `caution` reads an answer against the reference: one
sentence when the image is unlike those test images (features or input) or the model is less sure of it than of
nearly all of them, saying how often the model is right on the test images it is no surer of; None otherwise.

>>> ref = reference(loaded.model, test_set, loaded.card.preprocessing, "convit_scenes", "fashion_scenes")
>>> caution(ref, confidence=0.36, input_mean=0.1, input_spread=0.9, features=image_features(loaded.model, x))

Only `reference` and `image_features` import torch: the app reads references and words cautions without it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import catalog

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .data import ImageSet

__all__ = ["FEATURE_QUANTILE", "FOREIGN", "INPUT_RANGE", "REFERENCE", "REFERENCE_IMAGES", "UNSURE_SHARE", "caution",
           "distance", "flagged", "image_features", "load_reference", "reference", "reference_size"]

REFERENCE = "reference.json"
"""The file of an entry that holds its reference (`reference`), beside its weights."""
REFERENCE_IMAGES = 2000
"""Test images a reference is measured on (the first ones of the task's fixed test set; `reference_size`)."""
INPUT_RANGE = (0.005, 0.995)
"""The quantiles of the test images' input mean and spread between which an input counts as like them."""
UNSURE_SHARE = 0.05
"""An answer is unsure when the model is less confident of it than of all but this share of its test images."""
MIN_PEERS = 20
"""The fewest test images the 'right this often when this unsure' figure rests on (the least confident ones)."""


FEATURE_QUANTILE = 0.99
"""The share of the reference's test images whose features lie within the distance that counts as like them."""


def reference_size(test_images: int) -> int:
    """Test images a reference is measured on: the first `REFERENCE_IMAGES`, or half of a smaller test set (the rest
    left to measure the reference on)."""
    return min(REFERENCE_IMAGES, test_images // 2)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def image_features(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """What `model`'s classifier reads of `inputs` (B, C, H, W): timm's pre-logits, (B, D)."""
    import torch

    with torch.no_grad():
        return model.forward_head(model.forward_features(inputs), pre_logits=True).float()


def distance(ref: dict, features: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of `features` (B, D) to the nearest class mean of `ref`, under its pooled covariance."""
    centred = np.asarray(features, dtype=np.float64)[:, None, :] - np.asarray(ref["class_means"])[None]  # (B, K, D)
    squared = np.einsum("bkd,de,bke->bk", centred, np.asarray(ref["precision"]), centred)
    return np.sqrt(np.maximum(squared, 0.0)).min(axis=1)


def _rounded(values: np.ndarray) -> list:
    return [float(f"{v:.6g}") for v in values] if values.ndim == 1 else [_rounded(row) for row in values]


def reference(model: nn.Module, test: ImageSet, preprocessing: dict, name: str, data: str,
              weights: str | Path | None = None) -> dict:
    """`model`'s reference on the first `reference_size` images of `test`, prepared as its card's
    `preprocessing` says: per image its top-1 confidence and whether it was right (in test order); the quantiles
    `INPUT_RANGE` of the input's mean and spread (standard deviation) over the images; the class means of their
    features, the inverse of the features' pooled covariance (shrunk towards its mean variance by D / (n + D) for n
    images of D features) and the distance (`distance`) that
    `FEATURE_QUANTILE` of them stay within. `weights`: the file the model was loaded from, whose SHA-256 the
    reference records (it holds for those weights only)."""
    import torch

    from .preprocess import prepare_as_card

    images = test.subset(torch.arange(reference_size(len(test))))
    inputs = prepare_as_card(images.images, model, preprocessing)
    model = model.eval()
    features = torch.cat([image_features(model, x) for x in inputs.split(256)]).double()
    with torch.no_grad():
        probabilities = model.get_classifier()(features.float()).softmax(-1)
    confidence, predicted = probabilities.max(-1)
    labels = images.labels
    means = torch.stack([features[labels == k].mean(0) for k in range(probabilities.shape[1])])
    centred = features - means[labels]
    n, dims = features.shape
    pooled = centred.T @ centred / n
    # shrunk towards its mean variance by dims / (n + dims): few images in many dimensions (398 digits in 144)
    # estimate a covariance too poorly to invert as it is
    shrink = dims / (n + dims)
    covariance = (1 - shrink) * pooled + shrink * pooled.trace() / dims * torch.eye(dims, dtype=torch.float64)
    ref = {"class_means": _rounded(means.numpy()), "precision": _rounded(torch.linalg.inv(covariance).numpy())}
    reach = _quantile(distance(ref, features.numpy()).tolist(), FEATURE_QUANTILE)  # (of the rounded reference)
    input_means, spreads = inputs.mean(dim=(1, 2, 3)).tolist(), inputs.std(dim=(1, 2, 3)).tolist()
    return {
        "model": name, "data": data, "images": len(images),
        "weights_sha256": catalog.file_sha256(weights) if weights else None,
        "confidence": [round(c, 5) for c in confidence.tolist()],
        "correct": (predicted == labels).int().tolist(),
        "input_mean": [round(_quantile(input_means, q), 5) for q in INPUT_RANGE],
        "input_spread": [round(_quantile(spreads, q), 5) for q in INPUT_RANGE],
        "feature_reach": round(reach, 4), **ref,
    }


def caution(ref: dict, confidence: float, input_mean: float, input_spread: float,
            features: np.ndarray) -> str | None:
    """One sentence on how far to trust an answer given with top-1 `confidence` for an input (the normalised tensor
    the model saw) of mean `input_mean` and spread `input_spread` whose features (`image_features`, (D,)) are
    `features`, read against `ref` (`reference`); None when the image is like the reference's test images and the
    model is no less sure of it than of most of them."""
    n = len(ref["confidence"])
    low_mean, high_mean = ref["input_mean"]
    low_spread, high_spread = ref["input_spread"]
    far = float(distance(ref, np.asarray(features)[None])[0])
    share = f"{100 * FEATURE_QUANTILE:.0f}%"
    reasons = []
    if far > ref["feature_reach"]:
        reasons.append(f"what its classifier reads of it lies farther from every class it knows (distance {far:.1f}) "
                       f"than for {share} of them (up to {ref['feature_reach']:.1f})")
    if not (low_mean <= input_mean <= high_mean and low_spread <= input_spread <= high_spread):
        reasons.append(f"its input as the model sees it (mean {input_mean:.2f}, spread {input_spread:.2f}) is outside "
                       f"the range of {100 * (1 - 2 * INPUT_RANGE[0]):.0f}% of them (mean {low_mean:.2f} to "
                       f"{high_mean:.2f}, spread {low_spread:.2f} to {high_spread:.2f})")
    confidences = ref["confidence"]
    surer = sum(c > confidence for c in confidences)
    if confidence < _quantile(confidences, UNSURE_SHARE):
        reasons.append(f"the model is less sure of it ({100 * confidence:.0f}%) than of "
                       f"{'all' if surer == n else f'{surer:,}'} of them")
    if not reasons:
        return None
    # the test images the model is no surer of (at least the MIN_PEERS least confident), and how often it was right
    peers = sorted(range(n), key=confidences.__getitem__)[:max(MIN_PEERS, n - surer)]
    right = sum(ref["correct"][i] for i in peers) / len(peers)
    return (f"Read this answer as a guess. Against the first {n:,} test images of its task, {'; '.join(reasons)}. "
            f"On the {len(peers):,} of them it is least sure of (up to {100 * confidences[peers[-1]]:.0f}% "
            f"confident), it is right {100 * right:.0f}% of the time.")


def load_reference(name: str, root: str | Path | None = None) -> dict | None:
    """The reference of the shipped entry `name`, when it was measured with the entry's weights file as it is now;
    else None (no reference, an unreadable one, or one of other weights)."""
    return catalog.entry_file_for_weights(name, REFERENCE, root)


FOREIGN = {"fashion_scenes": "digits_scenes", "digits_scenes": "fashion_scenes", "fashion_mnist": "digits",
           "digits": "fashion_mnist"}
"""For `--measure`: another task's test images to give each task's models (what a caution should flag)."""


def flagged(ref: dict, model: nn.Module, images: torch.Tensor, preprocessing: dict) -> float:
    """The share of `images` (a dataset's uint8 images) whose features lie beyond `ref`'s reach."""
    import torch

    from .preprocess import prepare_as_card

    inputs = prepare_as_card(images, model, preprocessing)
    features = torch.cat([image_features(model, x) for x in inputs.split(256)]).numpy()
    return float((distance(ref, features) > ref["feature_reach"]).mean())


def main(argv: list[str] | None = None) -> int:
    """Write the reference of each shipped model whose task's test set loads here; with --measure, print how often
    the distance test flags the next (up to) 1,000 test images (false alarms) and 1,000 test images of another
    task."""
    from . import zoo
    from .data import load_test_set

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("names", nargs="*", help="shipped models (default: all)")
    parser.add_argument("--measure", action="store_true", help="measure the written references (writes nothing)")
    args = parser.parse_args(argv)
    for name in args.names or list(catalog.SHIPPED):
        loaded = zoo.load(name)
        data, pre = loaded.card.recipe["data"], loaded.card.preprocessing
        directory = catalog.entry_dir(name)
        test = load_test_set(data)
        if args.measure:
            ref = load_reference(name)
            held = test.images[ref["images"]:ref["images"] + 1000]
            foreign = load_test_set(FOREIGN[data]).images[:1000]
            print(f"{name}: flags {100 * flagged(ref, loaded.model, held, pre):.1f}% of {len(held)} more {data} test "
                  f"images, {100 * flagged(ref, loaded.model, foreign, pre):.1f}% of {len(foreign)} "
                  f"{FOREIGN[data]} test images")
            continue
        ref = reference(loaded.model, test, pre, name, data, catalog.weights_file(directory))
        (directory / REFERENCE).write_text(json.dumps(ref, separators=(",", ":")) + "\n")
        accuracy = sum(ref["correct"]) / ref["images"]
        print(f"{name}: {ref['images']} {data} test images, {100 * accuracy:.1f}% right; input mean "
              f"{ref['input_mean']}, spread {ref['input_spread']}; feature reach {ref['feature_reach']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
