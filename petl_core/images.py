"""Reading user images safely and turning them into exactly the tensor a model was evaluated on."""
from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from timm.data import create_transform, resolve_data_config
from torch import nn

from .errors import ImageError

__all__ = ["MAX_PIXELS", "ImageError", "data_config", "image_transform", "load_image", "to_display"]

MAX_PIXELS = 40_000_000
"""Largest image (width × height) accepted; larger ones, decompression bombs included, are refused unread."""


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent images on white, so transparent pixels do not turn black."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: stretch to 8 bits instead of clipping everything above 255 to white.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.round().astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return _flatten_alpha(image)
    return image.convert("RGB")


def load_image(source: str | Path | bytes | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file as RGB: EXIF orientation applied, transparency on white, first frame of animations.

    Raises:
        ImageError: the file is missing, not an image, truncated or corrupt, or over `max_pixels`.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)) and not Path(source).is_file():
        raise ImageError(f"image file not found: {source}")
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"image is {width}x{height} pixels; the limit is {max_pixels:,} pixels")
            image.seek(0)  # animated GIF/WebP/PNG: the first frame
            image.load()
            oriented = ImageOps.exif_transpose(image)
            return _to_rgb(oriented)
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        raise ImageError("not an image file (or a format Pillow cannot read)") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"image refused as a decompression bomb: {e}") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"the image is truncated or corrupt: {e}") from e


def data_config(model: nn.Module) -> dict:
    """timm's evaluation data config (resize, crop, mean, std) with the input size the model really takes."""
    config = resolve_data_config({}, model=model)
    in_chans = model.patch_embed.proj.in_channels
    config["input_size"] = (in_chans, *model.patch_embed.img_size)
    for key in ("mean", "std"):
        values = tuple(config[key])
        if len(values) != in_chans:
            config[key] = (sum(values) / len(values),) * in_chans
    return config


def image_transform(model: nn.Module) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> (C, height, width) tensor: the evaluation transform of `model` (resize, centre crop, norm)."""
    config = data_config(model)
    transform = create_transform(**config, is_training=False)
    grayscale = config["input_size"][0] == 1

    def preprocess(image: Image.Image) -> torch.Tensor:
        return transform(image.convert("L") if grayscale else image.convert("RGB"))

    return preprocess


def to_display(tensor: torch.Tensor, config: dict) -> np.ndarray:
    """Undo the normalisation of a (C, height, width) input: (height, width, 3) floats in [0, 1] to show."""
    mean = torch.tensor(config["mean"]).view(-1, 1, 1)
    std = torch.tensor(config["std"]).view(-1, 1, 1)
    image = (tensor.detach().cpu().float() * std + mean).clamp(0, 1)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.permute(1, 2, 0).numpy()
