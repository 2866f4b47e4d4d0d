"""Batches of stored images made into model inputs, the same way for training, evaluation and the app: resized to a
base size, zero-padded, normalised; in training, the dataset's augmentation on top."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .data import Augmentation

__all__ = ["BASE_SIZE", "PAD", "prepare"]

BASE_SIZE, PAD = 28, 2  # by default images are brought to 28×28, then zero-padded to the 32×32 model input


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
