"""Scenes: every object of a set (Fashion-MNIST items, digits) at a random position and scale on a 48×48 crop of a
natural texture, among pieces of objects of other classes, so that neither where it sits nor the texture around it
tells its class; generated deterministically from a seed (`scenes`). `fashion_scenes` and `digits_scenes` are the
fixed tasks that `petl_core.data.DATASETS` registers under those names.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import SCENE_SIZE, ImageSet, digits, fashion_mnist

__all__ = ["TEXTURES", "digits_scenes", "fashion_scenes", "scenes"]

TEXTURES = ("brick", "grass", "gravel", "camera")  # scikit-image's CC0 images behind the scenes


@functools.lru_cache(maxsize=1)  # fixed inputs; read-only afterwards
def _texture_bank() -> tuple[torch.Tensor, torch.Tensor]:
    """Every texture at two zooms (256 and 160 pixels from 512), stretched to [0, 1] between its 1st and 99th
    percentiles: maps (T, 256, 256) float32, zero beyond each map's side, and the sides (T,)."""
    from skimage import data as textures

    maps, sides = [], []
    for name in TEXTURES:
        image = torch.from_numpy(getattr(textures, name)().astype(np.float32))[None, None]  # (1, 1, 512, 512)
        for side in (256, 160):
            m = F.interpolate(image, size=(side, side), mode="bilinear", antialias=True, align_corners=False)[0, 0]
            lo, hi = torch.quantile(m.flatten(), torch.tensor([0.01, 0.99]))
            maps.append(F.pad(((m - lo) / (hi - lo)).clamp(0, 1), (0, 256 - side, 0, 256 - side)))
            sides.append(side)
    return torch.stack(maps), torch.tensor(sides)


def _background_layout(rng: np.random.Generator, n: int, sides: np.ndarray, size: int) -> np.ndarray:
    """(n, 6) int64 per scene: texture map, crop's y and x, mirror rows, mirror columns, transpose."""
    which = rng.integers(0, len(sides), n)
    y, x = (rng.random((2, n)) * (sides[which] - size + 1)).astype(np.int64)
    return np.column_stack([which, y, x, rng.random((3, n)).T < 0.5]).astype(np.int64)


def _crop(bank: torch.Tensor, layout: np.ndarray, size: int) -> torch.Tensor:
    """(n, size, size): the crops of the texture bank that `layout` (from `_background_layout`) describes."""
    which, y, x, flip_rows, flip_cols, transpose = layout.T
    steps = np.arange(size)
    rows = np.where(flip_rows[:, None] == 1, size - 1 - steps, steps) + y[:, None]  # (n, size)
    cols = np.where(flip_cols[:, None] == 1, size - 1 - steps, steps) + x[:, None]
    _, height, width = bank.shape
    t = transpose[:, None, None] == 1
    r = np.where(t, rows[:, None, :], rows[:, :, None])  # (n, size, size): a transposed crop reads rows along x
    c = np.where(t, cols[:, :, None], cols[:, None, :])
    return bank.take(torch.from_numpy((which[:, None, None] * height + r) * width + c))


def _place(objects: torch.Tensor, window: np.ndarray, corner: np.ndarray, side: np.ndarray,
           size: int) -> torch.Tensor:
    """Draw a square window of each object as a square on a size×size canvas (bilinear), zero elsewhere.

    Args:
        objects: (n, 1, k, k) in [0, 1].
        window: (n, 3) x, y, side of the window in object pixels (continuous; (0, 0, k) is the whole object).
        corner: (n, 2) x, y of the square's top-left corner in canvas pixels.
        side: (n,) the square's side in canvas pixels.

    Returns:
        (n, 1, size, size).
    """
    k = objects.shape[-1]
    ratio = window[:, 2] / side  # object pixels per canvas pixel
    centres = np.arange(size) + 0.5
    # grid_sample's coordinates: [-1, 1] spans the object's k pixels (align_corners=False)
    source = (window[:, None, :2] + (centres[None, :, None] - corner[:, None, :]) * ratio[:, None, None]) * 2 / k - 1
    source = torch.from_numpy(source).float()  # (n, size, 2): x, y for each canvas column / row
    grid = torch.stack(torch.broadcast_tensors(source[:, None, :, 0], source[:, :, None, 1]), dim=-1)
    drawn = F.grid_sample(objects, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # a piece is cut at its square, not continued by the rest of the object
    position = centres[None, :, None] - corner[:, None, :]  # (n, size, 2): from the square's corner, x and y
    inside = torch.from_numpy((position >= 0) & (position < side[:, None, None]))
    return drawn * (inside[:, None, :, 0] & inside[:, :, None, 1])[:, None]


def _dilate(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Max over the (2·radius + 1)² square around every pixel of (n, 1, s, s), zero beyond the border; separable
    running maxima, several times faster than max_pool2d with stride 1 on CPU."""
    s, width = x.shape[-1], 2 * radius + 1
    padded = F.pad(x, (radius,) * 4)
    rows = padded[..., :s, :]
    for i in range(1, width):
        rows = torch.maximum(rows, padded[..., i:i + s, :])
    out = rows[..., :s]
    for i in range(1, width):
        out = torch.maximum(out, rows[..., i:i + s])
    return out


def _paint(canvas: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    """Paint a placed object (n, 1, s, s) over the canvas: a soft dark halo around it, then the object with
    opacity min(1, 10·v) in intensity 0.45 + 0.55·v, so that even a dark garment outshines the dimmed texture."""
    alpha = (layer * 10).clamp_(max=1)
    halo = 1 - _dilate(alpha, 2) * 0.5  # (n, 1, s, s): darkens a 2-pixel ring around the object by half
    return canvas.mul_(halo).mul_(1 - alpha).addcmul_(layer * 0.55 + 0.45, alpha)


def scenes(objects: ImageSet, seed: int, size: int = SCENE_SIZE, object_side: tuple[float, float] = (22, 34),
           distractors: tuple[int, int] = (1, 2), chunk: int = 512) -> ImageSet:
    """One scene per object, same order and labels: the object at a random position and scale on a texture,
    among pieces of other objects, so that neither its position nor local texture tells what it is.

    Every random number comes from numpy's PCG64 seeded with `seed`, drawn for all scenes before any is drawn
    (so `chunk`, which only bounds memory, changes nothing); the same seed gives the same bytes.
    1. Background: a crop of one of `TEXTURES` (CC0, from scikit-image) at one of two zooms, mirrored and
       transposed at random, dimmed to [lo, hi] with lo in [0, 0.1] and hi in [0.25, 0.45].
    2. Distractors (`distractors` = (min, max) per scene): pieces of objects of other classes, a square window
       of 50-100% of their frame's side, drawn at 0.4-0.65× the main object's scale anywhere on the canvas (up to
       a third of it beyond the border; the main object may cover it): smaller than the object, often partial.
    3. The object, its k×k frame scaled to a side drawn from `object_side` (pixels), uniformly placed fully
       inside the canvas.
    Objects and pieces are painted by `_paint` (bright, over a dark halo).

    Args:
        objects: (N, 1, k, k) uint8, dark background (Fashion-MNIST, digits).
        size: canvas side in pixels.

    Returns:
        (N, 1, size, size) uint8 scenes with the objects' labels and classes.
    """
    rng = np.random.default_rng(seed)
    n, k = len(objects), objects.images.shape[-1]
    labels = objects.labels.numpy()
    bank, sides = _texture_bank()
    layout = _background_layout(rng, n, sides.numpy(), size)
    lo, hi = torch.from_numpy(rng.uniform((0.0, 0.25), (0.1, 0.45), (n, 2)).T).float()
    main_side = rng.uniform(*object_side, n)
    main_corner = rng.random((n, 2)) * (size - main_side[:, None])
    count = rng.integers(distractors[0], distractors[1] + 1, n)
    pieces = []
    for p in range(distractors[1]):
        other = rng.integers(0, n, n)
        for _ in range(20):  # redraw pieces of the scene's own class (a single-class set keeps its draws)
            same = labels[other] == labels
            if not same.any():
                break
            other[same] = rng.integers(0, n, same.sum())
        window_side = rng.uniform(0.5, 1.0, n) * k
        window = np.column_stack([rng.random((n, 2)) * (k - window_side[:, None]), window_side])
        side = window_side * main_side / k * rng.uniform(0.4, 0.65, n)
        corner = rng.random((n, 2)) * (size - side[:, None] / 3) - side[:, None] / 3  # up to 1/3 off the canvas
        pieces.append((other, window, corner, side, p < count))
    out = torch.empty(n, 1, size, size, dtype=torch.uint8)
    whole = np.column_stack([np.zeros((n, 2)), np.full(n, float(k))])
    for start in range(0, n, chunk):
        part = slice(start, min(n, start + chunk))
        texture = _crop(bank, layout[part], size)[:, None]  # (c, 1, size, size) in [0, 1]
        canvas = lo[part, None, None, None] + (hi - lo)[part, None, None, None] * texture
        for other, window, corner, side, present in pieces:
            shown = torch.from_numpy(present[part]).float()[:, None, None, None]  # a scene's extra pieces are blank
            source = objects.images[other[part]].float() / 255 * shown
            canvas = _paint(canvas, _place(source, window[part], corner[part], side[part], size))
        source = objects.images[part].float() / 255
        canvas = _paint(canvas, _place(source, whole[part], main_corner[part], main_side[part], size))
        out[part] = (canvas * 255).round().clamp(0, 255).to(torch.uint8)
    return ImageSet(out, objects.labels.clone(), list(objects.classes))


def fashion_scenes(root: str | Path | None = None, seed: int = 0, test_only: bool = False) -> tuple[ImageSet, ...]:
    """(train, test): one 48×48 scene per Fashion-MNIST image (60,000 and 10,000, same order, labels and classes),
    drawn by `scenes` with seeds 2·seed (train) and 2·seed + 1 (test): seed 0 gives the fixed task. With
    `test_only`, (test,) alone (a sixth of the work)."""
    train, test = fashion_mnist(root)
    return (scenes(test, 2 * seed + 1),) if test_only else (scenes(train, 2 * seed), scenes(test, 2 * seed + 1))


def digits_scenes(seed: int = 0, test_only: bool = False) -> tuple[ImageSet, ...]:
    """(train, test): one 48×48 scene per image of the digits task (1,000 and 797), seeds as `fashion_scenes`;
    with `test_only`, (test,)."""
    train, test = digits()
    return (scenes(test, 2 * seed + 1),) if test_only else (scenes(train, 2 * seed), scenes(test, 2 * seed + 1))
