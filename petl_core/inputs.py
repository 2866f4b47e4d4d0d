"""What a model expects as input, said in one line (`describe_input`), and an upload fitted to it (`model_input`):
the grayscale models trained here saw light objects on dark backgrounds, so a drawing or a product photo on white is
inverted first (the card decides whether a model is one of them: `light_on_dark`).

>>> loaded = zoo.load("convit_fmnist")
>>> inputs, inverted = model_input(loaded, load_image("t-shirt_on_white.png"))   # (C, H, W), True
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from .building import Loaded
from .cards import ModelCard

__all__ = ["MID_GREY", "describe_input", "light_background", "light_on_dark", "model_input"]

MID_GREY = 0.5
"""A border whose median brightness (0-1) is above this is a light background. Measured on the first 1,024 test
images of each task trained here: the largest border median is 0.07 (Fashion-MNIST), 0.00 (digits) and 0.40 (the
scenes' textures), so no test image is inverted."""
BORDER = 1 / 16
"""Width of the border ring, as a fraction of the shorter side (at least one pixel)."""
LISTED_CLASSES = 10
"""Up to this many classes are named in `describe_input`; more are counted."""


def light_on_dark(card: ModelCard) -> bool:
    """Whether the model of `card` was trained on light objects on dark backgrounds: a grayscale model trained here
    whose training images average below mid-grey (Fashion-MNIST, digits and their scenes all do)."""
    pre = card.preprocessing
    return pre.get("in_chans") == 1 and isinstance(pre.get("mean"), (int, float)) and pre["mean"] < MID_GREY


def light_background(image: Image.Image) -> bool:
    """Whether the median brightness of the border ring of the image's centre square (what a model trained here
    sees of it) is above MID_GREY."""
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0  # (height, width)
    height, width = gray.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = gray[top:top + side, left:left + side]
    ring = max(1, round(side * BORDER))
    inside = np.zeros_like(square, dtype=bool)
    inside[ring:side - ring, ring:side - ring] = True
    return float(np.median(square[~inside])) > MID_GREY


def model_input(loaded: Loaded, picture: Image.Image, invert: bool = True) -> tuple[torch.Tensor, bool]:
    """The (C, H, W) tensor `loaded` sees of `picture`, and whether the picture was inverted first: only with
    `invert`, for a light-on-dark model (`light_on_dark`) and a picture with a light background."""
    inverted = invert and light_on_dark(loaded.card) and light_background(picture)
    return loaded.preprocess(ImageOps.invert(picture.convert("RGB")) if inverted else picture), inverted


def describe_input(loaded: Loaded) -> str:
    """One line on what `loaded` sees, from its card (size, channels, preprocessing, background, classes) and its
    patch embedding (the patch grid)."""
    card, embed = loaded.card, loaded.model.patch_embed
    (rows, cols), (patch_h, patch_w) = embed.grid_size, embed.patch_size
    height, width = embed.img_size
    pre = card.preprocessing
    if "base_size" in pre:  # trained here: card_transform's steps
        base, pad = pre["base_size"], pre.get("pad", 0)
        padding = f" and padded by {pad} pixels" if pad else ""
        steps = f"the centre square of your image, brought to {base}×{base}{padding}"
    else:  # timm's evaluation transform
        crop = pre.get("crop_pct")
        steps = "your image resized and centre-cropped" + (f" (crop fraction {crop:g})" if crop else "")
    colour = "grayscale" if embed.proj.in_channels == 1 else "colour"
    background = ", light on dark (a light background is inverted first, unless that is switched off)" \
        if light_on_dark(card) else ""
    classes = card.classes
    named = f": {', '.join(classes)}" if len(classes) <= LISTED_CLASSES else (f" ({card.data})" if card.data else "")
    answers = f"it answers one of {len(classes)} classes{named}" if classes else "it has no classifier (a backbone)"
    return (f"{card.name} sees a {width}×{height} {colour} image ({steps}){background}, as {rows}×{cols} patches of "
            f"{patch_w}×{patch_h} pixels; {answers}.")
