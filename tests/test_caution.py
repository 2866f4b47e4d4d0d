"""How far to trust an answer (issue 30 item 9): the shipped references are what their weights do on their test
sets, the distance test flags few test images and many of another task, and /analyze says so beside the top-5."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from app.service import Service
from petl_core import catalog, zoo
from petl_core.caution import (
    FEATURE_QUANTILE,
    FOREIGN,
    REFERENCE,
    REFERENCE_IMAGES,
    caution,
    distance,
    flagged,
    image_features,
    load_reference,
    reference,
)
from petl_core.data import load_test_set
from petl_core.preprocess import prepare_as_card

pytestmark = pytest.mark.slow

MODEL = catalog.DEFAULT_MODEL
ROOT = catalog.ASSETS.parents[1]


def _features(loaded, images: torch.Tensor) -> np.ndarray:
    x = prepare_as_card(images, loaded.model, loaded.card.preprocessing)
    return torch.cat([image_features(loaded.model, b) for b in x.split(256)]).numpy()


@pytest.fixture(scope="module")
def loaded():
    return zoo.load(MODEL)


def test_the_shipped_reference_is_what_the_shipped_weights_do_on_their_test_set(loaded):
    shipped = load_reference(MODEL)
    assert shipped is not None and shipped["images"] == REFERENCE_IMAGES
    data = loaded.card.recipe["data"]
    directory = catalog.entry_dir(MODEL)
    again = reference(loaded.model, load_test_set(data), loaded.card.preprocessing, MODEL, data,
                      catalog.weights_file(directory))
    assert again["correct"] == shipped["correct"] and again["weights_sha256"] == shipped["weights_sha256"]
    np.testing.assert_allclose(again["confidence"], shipped["confidence"], atol=2e-5)
    np.testing.assert_allclose(again["precision"], shipped["precision"], rtol=1e-4, atol=1e-6)
    assert again["feature_reach"] == pytest.approx(shipped["feature_reach"], rel=1e-4)
    # its accuracy is the card's on those images
    assert sum(shipped["correct"]) / shipped["images"] == pytest.approx(loaded.card.accuracy["test"],
                                                                        abs=0.03)


@pytest.mark.parametrize("model", [MODEL, "convit_fmnist"])
def test_the_distance_flags_few_test_images_and_most_of_another_task(model):
    """What the module's doc quotes (`--measure`): on the next 1,000 test images (not in the reference) about 1% lie
    beyond the reach, and most test images of another task do."""
    loaded = zoo.load(model)
    ref, data = load_reference(model), loaded.card.recipe["data"]
    held = load_test_set(data).images[REFERENCE_IMAGES:REFERENCE_IMAGES + 1000]
    assert 0.002 <= flagged(ref, loaded.model, held, loaded.card.preprocessing) <= 2 * (1 - FEATURE_QUANTILE)
    foreign = load_test_set(FOREIGN[data]).images[:1000]
    assert flagged(ref, loaded.model, foreign, loaded.card.preprocessing) >= 0.55
    # flagged() is the distance of image_features, as the app's caution computes it
    np.testing.assert_allclose(distance(ref, _features(loaded, held[:8])),
                               [distance(ref, _features(loaded, held[i:i + 1]))[0] for i in range(8)], rtol=1e-4)


def test_a_caution_says_why_and_how_often_the_model_is_right_then():
    ref = load_reference(MODEL)
    near = np.asarray(ref["class_means"][0])  # a class's mean: no distance to speak of
    sure = sorted(ref["confidence"])[len(ref["confidence"]) // 2]
    middle = [sum(ref["input_mean"]) / 2, sum(ref["input_spread"]) / 2]
    assert caution(ref, sure, *middle, near) is None
    far = caution(ref, sure, *middle, near * 10)
    assert far.startswith("Read this answer as a guess.") and "farther from every class" in far
    unsure = caution(ref, 0.01, *middle, near)
    assert "less sure of it (1%) than of all of them" in unsure
    # the least confident test images, and how often they were right, from the reference itself
    lowest = np.argsort(ref["confidence"], kind="stable")[:20]
    assert f"right {100 * np.mean([ref['correct'][i] for i in lowest]):.0f}% of the time" in unsure
    odd = caution(ref, sure, ref["input_mean"][1] + 1, middle[1], near)
    assert "outside the range" in odd and "farther" not in odd


def test_a_reference_of_other_weights_is_not_used(tmp_path):
    shutil.copytree(catalog.entry_dir(MODEL), tmp_path / MODEL)
    assert load_reference(MODEL, root=tmp_path) is not None
    weights = catalog.weights_file(tmp_path / MODEL)
    weights.write_bytes(weights.read_bytes() + b" ")  # (other bytes: another SHA-256)
    assert load_reference(MODEL, root=tmp_path) is None
    (tmp_path / MODEL / REFERENCE).write_text("{not json")
    assert load_reference(MODEL, root=tmp_path) is None
    assert load_reference("../" + MODEL) is None and load_reference("no_such_model") is None


def test_the_analysis_carries_the_caution_for_shipped_weights_only(tmp_path):
    service = Service("cpu")
    photo = str(ROOT / "assets" / "examples" / "chelsea.png")
    result = service.result_for(photo, MODEL, None)
    said = service.caution(result, None)
    assert said and said.startswith("Read this answer as a guess.")
    sure = service.result_for(str(ROOT / "assets" / "examples" / "scene_pullover.png"), MODEL, None)
    assert service.caution(sure, None) is None
    # uploaded weights have no reference of theirs (the reference holds for the shipped file only)
    assert service.caution(result, str(tmp_path / "own.safetensors")) is None
