"""Batches of stored images made into model inputs, the same way for training, evaluation and the app: resized to a
base size, zero-padded, normalised; in training, the dataset's augmentation on top. `card_transform` does it to one
uploaded image for a model trained here."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .registry import BASE_SIZE, PAD

if TYPE_CHECKING:
    from .data import Augmentation

__all__ = ["BASE_SIZE", "PAD", "card_transform", "prepare", "prepare_as_card"]



def prepare(images: torch.Tensor, in_chans: int, mean: float, std: float, train: bool,
            generator: torch.Generator | None = None, *, augmentation: Augmentation | None = None,
            base_size: int = BASE_SIZE, pad: int = PAD) -> torch.Tensor:
    """uint8 (B, C, h, w) -> normalised float (B, in_chans, S, S), S = base_size + 2·pad: resized to base_size,
    zero-padded by pad; with `train`, the dataset's `augmentation` (needed then), drawn from `generator`."""
    x = images.float() / 255.0
    if x.shape[1] != in_chans:
        x = x.mean(dim=1, keepdim=True).expand(-1, in_chans, -1, -1)
    if x.shape[-2:] != (base_size, base_size):
        x = F.interpolate(x, size=(base_size, base_size), mode="bilinear", antialias=True, align_corners=False)
    if not train:
        return (F.pad(x, (pad,) * 4) - mean) / std
    if augmentation is None:
        raise ValueError("prepare(train=True) needs the dataset's augmentation")
    B, size, shift = x.shape[0], base_size + 2 * pad, augmentation.shift
    if shift:
        padded = F.pad(x, (pad + shift,) * 4)  # (B, C, S + 2·shift, S + 2·shift): room for a shift of ±shift
        dx, dy = (torch.randint(0, 2 * shift + 1, (2, B), generator=generator, device="cpu")).tolist()
        x = torch.stack([padded[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size] for i in range(B)])
    else:
        x = F.pad(x, (pad,) * 4)
    if augmentation.hflip:
        flip = torch.rand(B, generator=generator, device="cpu") < 0.5
        x[flip.to(x.device)] = x[flip.to(x.device)].flip(-1)
    return (x - mean) / std



def prepare_as_card(images: torch.Tensor, model: torch.nn.Module, preprocessing: dict) -> torch.Tensor:
    """uint8 (B, C, h, w) test images as `model` sees them: `prepare`d (no augmentation) as its card's
    `preprocessing` (mean, std, base_size, pad) says, at its patch embedding's channels."""
    return prepare(images, model.patch_embed.proj.in_channels, float(preprocessing["mean"]),
                   float(preprocessing["std"]), train=False, base_size=preprocessing["base_size"],
                   pad=preprocessing["pad"])

def _grayscale_square(image: Image.Image, base_size: int) -> torch.Tensor:
    """(1, 1, s, s) uint8: the image in grayscale, centre-cropped to its largest square (nothing is squashed)."""
    gray = image.convert("L")
    width, height = gray.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = gray.crop((left, top, left + side, top + side))
    if side > 32 * base_size:  # memory guard for huge photos: box-average by an integer factor first
        square = square.reduce(side // (16 * base_size))
    return torch.from_numpy(np.array(square, dtype=np.uint8))[None, None]


def card_transform(preprocessing: dict, in_chans: int = 1) -> Callable[[Image.Image], torch.Tensor]:
    """`pil_image -> (C, S, S)` for a model trained here, from its card's preprocessing: the evaluation path of
    `petl_core.train` (grayscale, centre square, then `prepare`: resize to the base size, pad, normalise).

    The resize is `prepare`'s own (bilinear, antialiased), so that dataset images of any size (28×28
    Fashion-MNIST, 8×8 digits, 48×48 scenes) give exactly the tensor the model was evaluated on; an image of the
    base size is not resized.
    """
    in_chans = preprocessing.get("in_chans", in_chans)
    mean, std = float(preprocessing["mean"]), float(preprocessing["std"])
    base_size, pad = preprocessing.get("base_size", BASE_SIZE), preprocessing.get("pad", PAD)

    def preprocess(image: Image.Image) -> torch.Tensor:
        return prepare(_grayscale_square(image, base_size), in_chans, mean, std, train=False, base_size=base_size,
                       pad=pad)[0]

    return preprocess
