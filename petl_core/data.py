"""Datasets for training and probing, all held in memory as uint8 image tensors.

* Fashion-MNIST from Debian's `dataset-fashion-mnist` package (or a folder given by argument or by the
  PETL_FASHION_MNIST environment variable);
* scikit-learn's handwritten digits as a small downstream task: a 1,000-image training split in the style of
  VTAB-1K and the other 797 images for test, plus k-shot subsets;
* any ImageFolder-style directory (one sub-folder per class), resized;
* a tiny generated dataset for tests.

Subsets are deterministic: `fraction_subset` keeps the first ⌊n_c·f⌋ images of each class in stored order
(as ConViT's official sampling ratio does with sorted file names); `k_shot_subset` draws k per class with a seed.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DatasetMissingError",
    "ImageSet",
    "digits",
    "fashion_mnist",
    "fraction_subset",
    "image_folder",
    "k_shot_subset",
    "load_dataset",
    "synthetic",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]


class DatasetMissingError(FileNotFoundError):
    """A dataset's files are not where they should be; the message says how to get them."""


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


def load_dataset(name: str, root: str | None = None, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, test) by name: 'fashion_mnist', 'digits', 'synthetic', or the path of an ImageFolder directory
    (which must hold `train/` and `test/` sub-folders)."""
    if name == "fashion_mnist":
        return fashion_mnist(root)
    if name == "digits":
        return digits(seed=seed)
    if name == "synthetic":
        return synthetic(seed=seed), synthetic(num_images=128, seed=seed + 1)
    path = Path(name)
    if path.is_dir():
        return image_folder(path / "train"), image_folder(path / "test")
    raise DatasetMissingError(f"unknown dataset {name!r}: use fashion_mnist, digits, synthetic or a folder path")
