"""Datasets for training and probing, all held in memory as uint8 image tensors.

* Fashion-MNIST from Debian's `dataset-fashion-mnist` package (or a folder given by argument or by the
  PETL_FASHION_MNIST environment variable);
* scikit-learn's handwritten digits as a small downstream task: a 1,000-image training split in the style of
  VTAB-1K and the other 797 images for test, plus k-shot subsets;
* scenes: the same objects at a random position and scale on a 48×48 natural-texture canvas with distractor
  pieces of other objects (`fashion_scenes`, `digits_scenes`), generated deterministically by `petl_core.scenes`;
* any ImageFolder-style directory (one sub-folder per class), resized;
* a tiny generated dataset for tests.

Every registered name (`DATASETS`) declares its training augmentation and the geometry a model sees it at
(`DatasetSpec`); `load_dataset` and `dataset_spec` also accept the path of an ImageFolder directory.

Subsets are deterministic: `fraction_subset` keeps the first ⌊n_c·f⌋ images of each class in stored order
(as ConViT's official sampling ratio does with sorted file names); `k_shot_subset` draws k per class with a seed.
"""
from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetMissingError
from .preprocess import BASE_SIZE, PAD

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "SCENE_SIZE",
    "Augmentation",
    "DatasetMissingError",
    "DatasetSpec",
    "ImageSet",
    "dataset_spec",
    "digits",
    "fashion_mnist",
    "fraction_subset",
    "image_folder",
    "k_shot_subset",
    "load_dataset",
    "load_test_set",
    "save_samples",
    "synthetic",
    "validation_split",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]


@dataclass
class ImageSet:
    """Images (N, C, height, width) uint8 with labels (N,) int64 and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W) uint8, got {tuple(self.images.shape)} {self.images.dtype}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: torch.Tensor | np.ndarray) -> ImageSet:
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(self.images[indices], self.labels[indices], self.classes)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def fashion_mnist(root: str | Path | None = None) -> tuple[ImageSet, ImageSet]:
    """(train, test): 60,000 and 10,000 28×28 grayscale images, 10 balanced classes."""
    root = Path(root or os.environ.get("PETL_FASHION_MNIST") or FASHION_MNIST_DIR)
    names = {split: (root / f"{split}-images-idx3-ubyte.gz", root / f"{split}-labels-idx1-ubyte.gz")
             for split in ("train", "t10k")}
    missing = [str(p) for pair in names.values() for p in pair if not p.is_file()]
    if missing:
        raise DatasetMissingError(
            f"Fashion-MNIST not found in {root} (missing {Path(missing[0]).name}): install it with "
            f"`sudo apt-get install dataset-fashion-mnist`, or point PETL_FASHION_MNIST at a folder holding the "
            f"four *-ubyte.gz files"
        )
    sets = []
    for images_path, labels_path in names.values():
        images = torch.from_numpy(_read_idx(images_path, 16).reshape(-1, 1, 28, 28).copy())
        labels = torch.from_numpy(_read_idx(labels_path, 8).astype(np.int64))
        sets.append(ImageSet(images, labels, list(FASHION_MNIST_CLASSES)))
    return sets[0], sets[1]


def digits(train_size: int = 1000, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test) from scikit-learn's 1,797 8×8 digits: `train_size` images (class-stratified) and the rest."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    train_idx, test_idx = train_test_split(np.arange(len(labels)), train_size=train_size, random_state=seed,
                                           stratify=bunch.target)
    classes = [str(c) for c in range(10)]
    full = ImageSet(images, labels, classes)
    return full.subset(np.sort(train_idx)), full.subset(np.sort(test_idx))


def image_folder(root: str | Path, size: int = 32, grayscale: bool = False) -> ImageSet:
    """Every image under root/<class>/ (any size, any format Pillow reads), resized to size×size."""
    from torchvision.datasets import ImageFolder

    from .images import ImageError, load_image

    root = Path(root)
    if not root.is_dir():
        raise DatasetMissingError(f"image folder not found: {root}")
    folder = ImageFolder(str(root), loader=lambda p: p)
    if not folder.samples:
        raise DatasetMissingError(f"no images under {root} (expected one sub-folder per class)")
    images, labels = [], []
    for path, label in folder.samples:
        try:
            image = load_image(path)
        except ImageError as e:
            raise ValueError(f"{path}: {e}") from e
        image = image.convert("L") if grayscale else image
        array = np.asarray(image.resize((size, size)), dtype=np.uint8)
        images.append(torch.from_numpy(array.reshape(size, size, -1).copy()).permute(2, 0, 1))
        labels.append(label)
    return ImageSet(torch.stack(images), torch.tensor(labels), list(folder.classes))


def synthetic(num_images: int = 256, size: int = 16, num_classes: int = 4, seed: int = 0) -> ImageSet:
    """A tiny learnable set for tests: class c is a bright bar in row band c, with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_images) % num_classes
    images = torch.randint(0, 60, (num_images, 1, size, size), generator=generator, dtype=torch.uint8)
    band = size // num_classes
    for c in range(num_classes):
        images[labels == c, :, c * band:(c + 1) * band, :] += 150
    return ImageSet(images, labels, [f"bar {c}" for c in range(num_classes)])


def save_samples(data: ImageSet, out_dir: str | Path, count: int = 16, scale: int = 4) -> list[Path]:
    """Write the first `count` images as PNGs for a person to look at, enlarged `scale`× (nearest neighbour) and
    named `NN_<class>.png`, and all of them captioned in one sheet, `samples.png`. Returns the paths."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = min(count, len(data))
    columns = min(count, 4)
    _, channels, height, width = data.images.shape
    cell_w, cell_h = width * scale + 8, height * scale + 20
    sheet = Image.new("RGB", (columns * cell_w, -(-count // columns) * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    paths = []
    for i in range(count):
        array = data.images[i].permute(1, 2, 0).numpy()
        image = Image.fromarray(array[..., 0] if channels == 1 else array).resize((width * scale, height * scale),
                                                                                  Image.NEAREST)
        name = data.classes[int(data.labels[i])]
        paths.append(out_dir / f"{i:02d}_{re.sub(r'[^A-Za-z0-9]+', '-', name)}.png")
        image.save(paths[-1])
        x, y = (i % columns) * cell_w + 4, (i // columns) * cell_h + 2
        sheet.paste(image.convert("RGB"), (x, y))
        draw.text((x, y + height * scale + 3), name, fill="black")
    paths.append(out_dir / "samples.png")
    sheet.save(paths[-1])
    return paths


def fraction_subset(labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the first ⌊n_c · fraction⌋ images of every class, in stored order (class-balanced, fixed)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    keep = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        keep.append(members[: max(1, int(len(members) * fraction))])
    return torch.cat(keep).sort().values


def k_shot_subset(labels: torch.Tensor, shots: int, seed: int = 0) -> torch.Tensor:
    """Indices of `shots` images per class drawn with `seed` (the same seed gives the same subset)."""
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        if len(members) < shots:
            raise ValueError(f"class {int(c)} has only {len(members)} images, fewer than {shots} shots")
        keep.append(members[torch.randperm(len(members), generator=generator)[:shots]])
    return torch.cat(keep).sort().values


def validation_split(labels: torch.Tensor, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): `count` images held out, each class in proportion to its size (largest
    remainders round; at least one per class and one left to train), drawn with `seed`; both sorted. For choosing
    hyper-parameters without the test set."""
    if not 0 < count < len(labels):
        raise ValueError(f"a validation split needs 0 < count < {len(labels)} images, got {count}")
    classes, sizes = labels.unique(return_counts=True)
    exact = count * sizes.double() / len(labels)
    quota = exact.floor().long()
    quota[(exact - quota).argsort(descending=True)[:count - int(quota.sum())]] += 1
    quota = quota.clamp(min=1).minimum(sizes - 1)
    generator = torch.Generator().manual_seed(seed * 7_919 + 1)  # not the stream k_shot_subset draws from
    held = []
    for c, take in zip(classes, quota.tolist(), strict=True):
        members = (labels == c).nonzero().flatten()
        held.append(members[torch.randperm(len(members), generator=generator)[:take]])
    val = torch.cat(held).sort().values
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation a dataset declares (recorded in every training history as `augmentation`)."""

    shift: int = 2
    """Random translation by up to this many pixels along each axis, zero-filled."""
    hflip: bool = False
    """Random horizontal mirror: only for data whose class a mirror never changes (never digits)."""


@dataclass(frozen=True)
class DatasetSpec:
    """How a dataset is loaded and how a model sees it: resized to base_size, zero-padded by pad on each side."""

    load: Callable[[str | None, int], tuple[ImageSet, ImageSet]]
    """(root, seed) -> (train, test)."""
    augmentation: Augmentation
    base_size: int = BASE_SIZE
    pad: int = PAD
    description: str = ""
    """What the images show, for model cards ("what the model recognises, on which images")."""

    @property
    def input_size(self) -> int:
        """Side of the model's input: base_size + 2·pad."""
        return self.base_size + 2 * self.pad


SCENE_SIZE = 48  # scenes are drawn and seen at 48×48: a 12×12 grid of the shipped architectures' 4-pixel patches


def _scenes(name: str, root: str | None, test_only: bool = False) -> tuple[ImageSet, ...]:
    """The fixed scenes task `name` ("fashion_scenes" or "digits_scenes", seed 0 whatever the run's), as
    `petl_core.scenes` draws it: (train, test), or (test,) with `test_only`."""
    from . import scenes  # imported on first use: the scenes are drawn from this module's objects

    return (scenes.fashion_scenes(root, test_only=test_only) if name == "fashion_scenes"
            else scenes.digits_scenes(test_only=test_only))


_CLOTHES = ("clothing items of 10 classes (T-shirt/top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, "
            "ankle boot)")
_SCENE = ("at a random place and size (22-34 pixels) on a 48×48 crop of a natural texture (scikit-image's CC0 "
          "brick, grass, gravel, ...), among 1-2 pieces of other {}, in grayscale; the test scenes are drawn once, "
          "from the test images")

DATASETS: dict[str, DatasetSpec] = {
    # A mirrored garment or bag is still one; a mirrored digit may not be a digit at all.
    "fashion_mnist": DatasetSpec(lambda root, seed: fashion_mnist(root), Augmentation(shift=2, hflip=True),
                                 description=f"Fashion-MNIST: {_CLOTHES}, 28×28 grayscale, centred on black"),
    "digits": DatasetSpec(lambda root, seed: digits(seed=seed), Augmentation(shift=2, hflip=False),
                          description="handwritten digits 0-9 (scikit-learn's 8×8 UCI digits), white on black"),
    "synthetic": DatasetSpec(lambda root, seed: (synthetic(seed=seed), synthetic(num_images=128, seed=seed + 1)),
                             Augmentation(shift=2, hflip=True), description="generated bars of 4 classes"),
    # Scenes are a fixed task (the run's seed does not redraw them), seen at their own 48 pixels. Their objects
    # already sit anywhere on the canvas, and a shift would only add a black border.
    "fashion_scenes": DatasetSpec(lambda root, seed: _scenes("fashion_scenes", root),
                                  Augmentation(shift=0, hflip=True), base_size=SCENE_SIZE, pad=0,
                                  description=f"Fashion-MNIST scenes: one of {_CLOTHES} "
                                              + _SCENE.format("items")),
    "digits_scenes": DatasetSpec(lambda root, seed: _scenes("digits_scenes", root),
                                 Augmentation(shift=0, hflip=False), base_size=SCENE_SIZE, pad=0,
                                 description="digit scenes: a handwritten digit 0-9 (scikit-learn's UCI digits) "
                                             + _SCENE.format("digits")),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset, or of an ImageFolder directory holding `train/` and `test/` (shifted,
    never mirrored: a folder's classes may be changed by a mirror)."""
    if name in DATASETS:
        return DATASETS[name]
    path = Path(name)
    if path.is_dir():
        return DatasetSpec(lambda root, seed: (image_folder(path / "train"), image_folder(path / "test")),
                           Augmentation(shift=2, hflip=False))
    raise DatasetMissingError(f"unknown dataset {name!r}: use {', '.join(DATASETS)} or a folder path")


def load_dataset(name: str, root: str | None = None, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test) by name (one of `DATASETS`) or the path of an ImageFolder directory (which must hold
    `train/` and `test/` sub-folders)."""
    return dataset_spec(name).load(root, seed)


def load_test_set(name: str, root: str | None = None) -> ImageSet:
    """The fixed test set of dataset `name` (as `load_dataset(name)[1]`), without generating its training scenes."""
    if name in ("fashion_scenes", "digits_scenes"):
        return _scenes(name, root, test_only=True)[0]
    return load_dataset(name, root)[1]
