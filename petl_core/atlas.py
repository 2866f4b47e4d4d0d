"""The locality atlas: how far every head of every layer looks, image by image, over a probe set.

>>> probe = probe_set(loaded.card.recipe["data"])            # petl_core.dial: the first 256 test images of the task
>>> atlas = locality_atlas(loaded.model, probe, loaded.card.preprocessing)
>>> atlas.nonlocality.shape                                   # (images, layers, H), in patches

Where `diagnostics.dynamics` keeps only the mean over the probe images, the atlas keeps each image's value, so a
learner sees the spread and can pick out the images a head treats differently (and whether the model got them right).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data import ImageSet
from .metrics import nonlocality
from .preprocess import BASE_SIZE, PAD, prepare
from .probe import trace

__all__ = ["Atlas", "locality_atlas"]


@dataclass(frozen=True)
class Atlas:
    """One model's nonlocality on each of B probe images, per layer (L blocks) and head (H), with its predictions."""

    nonlocality: torch.Tensor
    """(B, L, H) float32, in patches (`metrics.nonlocality` of each image's own attention)."""
    labels: torch.Tensor
    """(B,) int64: the true class of each probe image."""
    predictions: torch.Tensor
    """(B,) int64: the model's top-1 class of each probe image."""
    classes: list[str]
    """Class names, indexed by `labels` and `predictions`."""
    gated_blocks: list[int]
    """The model's GPSA blocks (ConViT), empty for a ViT."""

    @property
    def correct(self) -> torch.Tensor:
        """(B,) bool: the images the model classifies right."""
        return self.predictions == self.labels


@torch.no_grad()
def locality_atlas(model: nn.Module, probe: ImageSet, preprocessing: dict, batch: int = 32) -> Atlas:
    """Trace `model` over `probe` (prepared as its card says, as `dial.probe_accuracy` does), `batch` images at a
    time, and keep each image's nonlocality per layer and head and the model's prediction.

    Args:
        model: an instrumented model (petl_core.create_model / zoo.load); in eval mode; under whatever dial is set.
        probe: B images (B, C, h, w) uint8 with labels (dial.probe_set).
        preprocessing: the card's mean, std and optionally base_size and pad.
        batch: images per forward pass (the attention of one batch is held at once).

    Returns:
        The Atlas, on the CPU. ValueError when the layers do not all have the same number of heads.
    """
    device = next(model.parameters()).device
    in_chans = model.patch_embed.proj.in_channels
    mean, std = float(preprocessing["mean"]), float(preprocessing["std"])
    base_size, pad = preprocessing.get("base_size", BASE_SIZE), preprocessing.get("pad", PAD)
    values, predictions, gated = [], [], []
    for start in range(0, len(probe), batch):
        x = prepare(probe.images[start:start + batch], in_chans, mean, std, train=False, base_size=base_size,
                    pad=pad).to(device)
        t = trace(model, x)
        heads = {a.shape[1] for a in t.attention}
        if len(heads) != 1:
            raise ValueError(f"the layers have different numbers of heads ({sorted(heads)}): no (layers, heads) atlas")
        per_layer = [nonlocality(a, t.grid, p) for a, p in zip(t.attention, t.num_prefix, strict=True)]  # L × (b, H)
        values.append(torch.stack(per_layer, dim=1).float().cpu())  # (b, L, H)
        predictions.append(t.logits.argmax(-1).cpu())
        gated = t.gated_blocks
    return Atlas(nonlocality=torch.cat(values), labels=probe.labels.clone(), predictions=torch.cat(predictions),
                 classes=list(probe.classes), gated_blocks=gated)
