"""The generated scenes (objects anywhere on natural textures among distractors) and the augmentation each
dataset declares."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from petl_core.data import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    DatasetMissingError,
    dataset_spec,
    digits,
    fashion_mnist,
    load_dataset,
    save_samples,
)
from petl_core.preprocess import prepare
from petl_core.scenes import digits_scenes, scenes

PATCH = 4  # the shipped architectures' patch size


@pytest.fixture(scope="module")
def fashion():
    return fashion_mnist()


@pytest.fixture(scope="module")
def objects(fashion):
    """400 Fashion-MNIST test images, 40 of each class."""
    test = fashion[1]
    keep = torch.cat([(test.labels == c).nonzero().flatten()[:40] for c in range(10)]).sort().values
    return test.subset(keep)


def test_same_seed_same_bytes_other_seed_other_scenes(objects):
    a = scenes(objects, seed=5)
    assert torch.equal(a.images, scenes(objects, seed=5, chunk=37).images)  # chunking only bounds memory
    b = scenes(objects, seed=6)
    assert (a.images != b.images).float().mean() > 0.5
    assert torch.equal(a.labels, objects.labels) and torch.equal(b.labels, objects.labels)


def test_fashion_scenes_are_the_real_items_on_a_12x12_patch_grid_with_a_fixed_test_set(fashion):
    train, test = load_dataset("fashion_scenes", seed=3)  # a run's seed does not redraw the task
    assert train.images.shape == (60000, 1, 48, 48) and test.images.shape == (10000, 1, 48, 48)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.classes == FASHION_MNIST_CLASSES and test.classes == FASHION_MNIST_CLASSES
    assert torch.equal(train.labels, fashion[0].labels) and torch.equal(test.labels, fashion[1].labels)
    assert torch.equal(train.labels.bincount(), torch.full((10,), 6000))
    assert torch.equal(test.labels.bincount(), torch.full((10,), 1000))
    assert torch.equal(test.images, scenes(fashion[1], seed=1).images)  # the fixed test set, drawn on its own
    assert 30 < train.images.float().mean() < 120 and train.images.max() == 255
    assert dataset_spec("fashion_scenes").input_size == 48 and 48 // PATCH == 12


def test_the_object_is_anywhere_and_stands_out(objects):
    alone = scenes(objects, seed=2, distractors=(0, 0)).images[:, 0].float()  # (400, 48, 48)
    # The dimmed texture stays at or below 0.45·255 and the object is painted above it.
    bright = alone > 0.46 * 255
    share = bright.float().mean((1, 2))
    assert share.min() > 0.02 and share.max() < 0.6, (share.min(), share.max())  # a thin trouser: 3%
    steps = torch.arange(48.0) + 0.5
    cy = (bright.float() * steps[:, None]).sum((1, 2)) / bright.sum((1, 2))
    cx = (bright.float() * steps[None, :]).sum((1, 2)) / bright.sum((1, 2))
    for c in (cx, cy):  # in patches: spread over the grid, not at one place
        assert c.std() / PATCH > 1.2 and (c.max() - c.min()) / PATCH > 5, (c.std(), c.min(), c.max())
    # With distractors, more of the canvas is painted, but the object still covers the most.
    cluttered = scenes(objects, seed=2).images[:, 0].float() > 0.46 * 255
    assert cluttered.float().mean() > bright.float().mean()


def test_digits_scenes_keep_the_digits_task():
    train, test = digits_scenes()
    source_train, source_test = digits()
    assert train.images.shape == (1000, 1, 48, 48) and test.images.shape == (797, 1, 48, 48)
    assert torch.equal(train.labels, source_train.labels) and torch.equal(test.labels, source_test.labels)
    assert torch.equal(test.images, digits_scenes()[1].images)


def test_each_dataset_declares_its_augmentation_and_digits_are_never_mirrored(tmp_path):
    assert DATASETS["fashion_mnist"].augmentation.hflip and DATASETS["fashion_scenes"].augmentation.hflip
    assert not DATASETS["digits"].augmentation.hflip and not DATASETS["digits_scenes"].augmentation.hflip
    assert DATASETS["digits"].augmentation.shift == 2 and DATASETS["digits_scenes"].augmentation.shift == 0
    (tmp_path / "train").mkdir()
    assert not dataset_spec(str(tmp_path)).augmentation.hflip  # unknown classes: a mirror might change them
    with pytest.raises(DatasetMissingError, match="fashion_scenes"):
        dataset_spec("imagenet")
    # The declaration is what prepare applies: no digit comes out mirrored, shifted ones do.
    images = digits()[0].images[:64]
    spec = DATASETS["digits"]
    x = prepare(images, 1, 0.0, 1.0, train=True, generator=torch.Generator().manual_seed(0),
                augmentation=spec.augmentation)
    plain = prepare(images, 1, 0.0, 1.0, train=False)
    padded = torch.nn.functional.pad(plain, (2,) * 4)
    for i in range(64):
        assert any(torch.equal(padded[i, :, dy:dy + 32, dx:dx + 32], x[i]) for dy in range(5) for dx in range(5)), i
    assert not torch.equal(x, plain)
    with pytest.raises(ValueError, match="augmentation"):
        prepare(images, 1, 0.0, 1.0, train=True)


def test_fashion_mnist_keeps_its_shift_and_flip(fashion):
    images = fashion[0].images[:256]
    spec = DATASETS["fashion_mnist"]
    x = prepare(images, 1, 0.0, 1.0, train=True, generator=torch.Generator().manual_seed(0),
                augmentation=spec.augmentation)
    padded = torch.nn.functional.pad(prepare(images, 1, 0.0, 1.0, train=False), (2,) * 4)
    flipped = sum(any(torch.equal(padded[i, :, dy:dy + 32, dx:dx + 32].flip(-1), x[i]) and not
                      torch.equal(padded[i, :, dy:dy + 32, dx:dx + 32], x[i]) for dy in range(5) for dx in range(5))
                  for i in range(256))
    assert 90 < flipped < 166  # about half, as before datasets declared it


def test_samples_are_pngs_a_person_can_open(objects, tmp_path):
    paths = save_samples(scenes(objects, seed=0), tmp_path, count=6, scale=3)
    assert len(paths) == 7 and paths[-1].name == "samples.png"
    assert [p.name for p in paths[:2]] == ["00_Ankle-boot.png", "01_Pullover.png"]  # the test split's first items
    with Image.open(paths[1]) as image:
        assert image.size == (144, 144) and image.mode == "L"
    assert np.asarray(Image.open(paths[-1])).shape[:2] == (2 * (144 + 20), 4 * (144 + 8))
