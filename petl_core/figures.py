"""Static matplotlib figures of a trace (used by the CLI; the app draws its own interactive views).

Figures are built with `matplotlib.figure.Figure` directly, never pyplot, so they are safe in threads and
need no display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from PIL import Image

from . import metrics
from .probe import Trace
from .query import Query

__all__ = [
    "ATTENTION_LINEAR_RANGE",
    "ATTENTION_LOG_RANGE",
    "KEY_COLOURS",
    "attention_colour_label",
    "attention_grid_figure",
    "attention_layer_figure",
    "attention_norm",
    "bypass_figure",
    "compare_figure",
    "conv_channels_figure",
    "gates_figure",
    "maps_row_figure",
    "marked_maps_figure",
    "overlay_map",
    "query_maps",
    "save_figure",
]

_PANEL = 1.9  # inches per map panel
COMPARE_LABEL_SCALE = 0.8
"""Font size of the compare figure's labels, in points per inch of figure width."""

ATTENTION_LOG_RANGE = (1e-3, 1.0)
"""Colour range of every attention map on a log scale: from 0.001 (weaker weights take the bottom colour) to 1 (all of
a query's attention on one key). Fixed, never fitted to the map: near-uniform attention (1/P on every key, 0.016 on
an 8×8 grid) is one flat colour, in the grid, the enlarged map and every other view alike."""
ATTENTION_LINEAR_RANGE = (0.0, 1.0)
"""Colour range of every attention map on a linear scale (fixed, as ATTENTION_LOG_RANGE)."""


def attention_norm(log_scale: bool) -> Normalize:
    """The fixed colour scale of attention maps (ATTENTION_LOG_RANGE or ATTENTION_LINEAR_RANGE)."""
    return LogNorm(*ATTENTION_LOG_RANGE, clip=True) if log_scale else Normalize(*ATTENTION_LINEAR_RANGE, clip=True)


def attention_colour_label(log_scale: bool) -> str:
    """The title of an attention map's colour bar, with its fixed range."""
    low, high = ATTENTION_LOG_RANGE if log_scale else ATTENTION_LINEAR_RANGE
    return f"attention weight ({'log' if log_scale else 'linear'} scale, fixed {low:g} to {high:g})"


def _attention_colour_bar(fig: Figure, axes, log_scale: bool, fontsize: float | None = None) -> None:
    """One colour bar for the attention maps on `axes` (drawn with attention_norm), labelled with its range."""
    bar = fig.colorbar(ScalarMappable(attention_norm(log_scale), "inferno"), ax=axes, shrink=0.8)
    bar.set_label(attention_colour_label(log_scale), fontsize=fontsize)
    if fontsize:
        bar.ax.tick_params(labelsize=fontsize * 0.8)


def _colour_norm(values: np.ndarray, log_scale: bool) -> Normalize:
    """Log scale: three decades below the map's maximum (weaker weights clip to the bottom colour)."""
    if log_scale:
        top = float(values.max())
        return LogNorm(vmin=max(top * 1e-3, 1e-8), vmax=max(top, 1e-7), clip=True)
    return Normalize(vmin=0.0, vmax=float(values.max()) or 1.0)


def overlay_map(ax, image: np.ndarray, values: np.ndarray, log_scale: bool, cmap: str = "inferno",
                norm: Normalize | None = None) -> AxesImage:
    """Draw `values` (rows, cols) over `image` (height, width, 3), each cell covering its patch exactly, coloured
    by `norm` (default: from 0, or three decades on a log scale, to the map's maximum); returns the map's layer
    (for a colour bar)."""
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0))
    layer = ax.imshow(values, extent=(0, width, height, 0), cmap=cmap, norm=norm or _colour_norm(values, log_scale),
                      alpha=0.6, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return layer


def _mark_patch(ax, patch: tuple[int, int], patch_size: tuple[int, int]) -> None:
    row, col = patch
    ph, pw = patch_size
    ax.add_patch(Rectangle((col * pw, row * ph), pw, ph, fill=False, edgecolor="cyan", linewidth=1.5))


def attention_layer_figure(
        trace: Trace,
        layer: int,
        image: np.ndarray,
        query: Query,
        patch_size: tuple[int, int],
        index: int = 0,
        log_scale: bool = True,
) -> Figure:
    """Where `query` looks in every head of block `layer`, over the model's input image.

    GPSA blocks get three rows (mixed attention, content part, positional part) with each head's σ(λ).
    """
    parts = [("attention", trace.attention[layer])]
    if trace.content[layer] is not None:
        parts += [("content", trace.content[layer]), ("positional", trace.positional[layer])]
    prefix = trace.num_prefix[layer]
    num_heads = trace.attention[layer].shape[1]
    gates = None
    if trace.gates[layer] is not None:
        gates = trace.gates[layer].tolist()
    fig = Figure(figsize=(_PANEL * num_heads, _PANEL * len(parts) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(parts), num_heads, squeeze=False))
    fig.suptitle(f"block {layer}: attention of the {query.label}" + (" (log scale)" if log_scale else ""))
    for row, (name, attention) in enumerate(parts):
        maps = metrics.attention_map(attention[min(index, attention.shape[0] - 1)], trace.grid, query, prefix)
        for head in range(num_heads):
            ax = axes[row, head]
            overlay_map(ax, image, maps[head].float().cpu().numpy(), log_scale, norm=attention_norm(log_scale))
            if not query.is_cls:
                _mark_patch(ax, query.patch, patch_size)
            title = f"{name} h{head}"
            if gates is not None:
                title += f"\nσ(λ)={gates[head]:.2f}"
            ax.set_title(title, fontsize=8)
    _attention_colour_bar(fig, axes.ravel().tolist(), log_scale)
    return fig


def query_maps(trace: Trace, layer: int, query: Query, index: int = 0,
               part: str = "attention") -> torch.Tensor | None:
    """(H, rows, cols) attention of `query` in block `layer` (part: attention, content or positional), or None
    when that block cannot answer (a class-token query in a block without class token, a part it lacks)."""
    attention = getattr(trace, part)[layer]
    prefix = trace.num_prefix[layer]
    if attention is None or (query.is_cls and prefix == 0):
        return None
    return metrics.attention_map(attention[min(index, attention.shape[0] - 1)], trace.grid, query, prefix)


def _blank(ax, text: str, fontsize: float = 7) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=fontsize, wrap=True, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _blend(background: np.ndarray, values: np.ndarray, cell: int, log_scale: bool,
           query: Query) -> np.ndarray:
    """One panel of a mosaic: `values` (rows, cols) coloured on the fixed attention scale, each cell `cell` pixels
    wide, over `background` (rows·cell, cols·cell, 3); the query patch framed in cyan."""
    colours = colormaps["inferno"](attention_norm(log_scale)(values))[..., :3]
    panel = 0.4 * background + 0.6 * np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1)
    if not query.is_cls:
        r, c = query.patch
        frame = panel[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
        frame[[0, -1], :] = frame[:, [0, -1]] = (0.0, 1.0, 1.0)
    return panel


def attention_grid_figure(
        trace: Trace,
        image: np.ndarray,
        query: Query,
        index: int = 0,
        log_scale: bool = True,
) -> Figure:
    """Every block (rows) and head (columns): where `query` looks, over the model's input image.

    Drawn as one mosaic image (a panel per head and block) rather than one axes per panel: several times faster
    to draw, and a click on a patch waits for it.
    """
    rows, cols = trace.grid
    num_layers = len(trace.attention)
    num_heads = max(a.shape[1] for a in trace.attention)
    cell = max(2, 72 // max(rows, cols))
    height, width, gap = rows * cell, cols * cell, 3
    background = np.asarray(Image.fromarray((image * 255).round().astype(np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR), dtype=np.float64) / 255
    mosaic = np.ones((num_layers * (height + gap) - gap, num_heads * (width + gap) - gap, 3))
    missing = []
    for layer in range(num_layers):
        maps = query_maps(trace, layer, query, index)
        for head in range(num_heads):
            top, left = layer * (height + gap), head * (width + gap)
            if maps is None:
                mosaic[top:top + height, left:left + width] = 0.85
                missing.append((top + height / 2, left + width / 2))
            elif head < maps.shape[0]:
                values = maps[head].float().cpu().numpy()
                mosaic[top:top + height, left:left + width] = _blend(background, values, cell, log_scale, query)
    fig = Figure(figsize=(0.95 * num_heads + 2.0, 0.95 * num_layers + 0.8), layout="constrained")  # + colour bar
    ax = fig.subplots()
    ax.imshow(mosaic, interpolation="nearest")
    for y, x in missing:
        ax.text(x, y, "no class\ntoken", ha="center", va="center", fontsize=6)
    ax.set_xticks([h * (width + gap) + width / 2 for h in range(num_heads)], [f"head {h}" for h in range(num_heads)],
                  fontsize=7)
    ax.set_yticks([b * (height + gap) + height / 2 for b in range(num_layers)],
                  [f"block {b}" for b in range(num_layers)], fontsize=7)
    ax.tick_params(length=0, labeltop=True, labelbottom=False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(f"attention of the {query.label}, every block and head" + (" (log scale)" if log_scale else ""),
                 fontsize=9)
    _attention_colour_bar(fig, ax, log_scale)
    return fig


def compare_figure(
        panels: list[tuple[str, Trace, np.ndarray, tuple[int, int]]],
        layer: int,
        query: Query,
        log_scale: bool = True,
) -> Figure:
    """Several models (rows: label, trace, input image, patch size) at the same block and query: each head and
    their mean (last column), on the fixed attention scale with one colour bar."""
    num_heads = max(t.attention[min(layer, len(t.attention) - 1)].shape[1] for _, t, _, _ in panels)
    width = _PANEL * (num_heads + 1) + 4.0  # + the row labels and the colour bar
    fig = Figure(figsize=(width, _PANEL * len(panels) + 0.8), layout="constrained")
    # the page shrinks the figure to its width: labels scale with it so they stay about 11 px on a 1,000 px page
    label_size = max(10.0, COMPARE_LABEL_SCALE * width)
    axes = fig.subplots(len(panels), num_heads + 1, squeeze=False)
    fig.suptitle(f"block {layer}, attention of the {query.label}" + (" (log scale)" if log_scale else ""),
                 fontsize=label_size)
    for row, (label, trace, image, patch_size) in enumerate(panels):
        maps = query_maps(trace, layer, query) if layer < len(trace.attention) else None
        for col in range(num_heads + 1):
            ax = axes[row, col]
            is_mean = col == num_heads
            if maps is None:
                _blank(ax, f"{label}: no block {layer}" if layer >= len(trace.attention) else
                       "no class token\nin this block", fontsize=label_size * 0.6)
            elif not is_mean and col >= maps.shape[0]:
                _blank(ax, "")
            else:
                values = maps.mean(dim=0) if is_mean else maps[col]
                overlay_map(ax, image, values.float().cpu().numpy(), log_scale, norm=attention_norm(log_scale))
                if not query.is_cls:
                    _mark_patch(ax, query.patch, patch_size)
            if row == 0:
                ax.set_title("mean of heads" if is_mean else f"head {col}", fontsize=label_size * 0.8)
            if col == 0:  # horizontal, so a model's name reads without turning one's head
                ax.set_ylabel(label, fontsize=label_size, rotation=0, ha="right", va="center")
    _attention_colour_bar(fig, axes.ravel().tolist(), log_scale, fontsize=label_size * 0.8)
    return fig


def gates_figure(gates: torch.Tensor, gated_blocks: list[int]) -> Figure:
    """σ(λ) per GPSA block (rows) and head (columns): 1 = purely positional (convolution-like), 0 = content. Coloured
    on a diverging scale over [0, 1], white at the initial value σ(1) (marked on the colour bar): red heads became
    more positional than at init, blue ones more content-based."""
    values = gates.float().cpu().numpy()
    fig = Figure(figsize=(max(4.5, 1.5 + 0.55 * values.shape[1]), 1.2 + 0.4 * values.shape[0]), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(metrics.GATE_AT_INIT, 0.0, 1.0), aspect="auto")
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if abs(v - metrics.GATE_AT_INIT) > 0.4 else "black")
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]), [f"block {b}" for b in gated_blocks])
    ax.set_xlabel("head")
    ax.set_title("gates σ(λ): weight of positional attention", fontsize=10)
    bar = fig.colorbar(image, ax=ax, label="σ(λ)")
    bar.set_ticks([0.0, 0.5, metrics.GATE_AT_INIT, 1.0],
                  labels=["0", "0.5", f"{metrics.GATE_AT_INIT:.3f} = σ(1), init", "1"])
    return fig


def bypass_figure(maps: dict[int, dict[str, metrics.BypassMaps]], image: np.ndarray, index: int = 0) -> Figure:
    """Per Convpass block (columns): bypass norm and bypass/main ratio per patch, for each branch (rows)."""
    blocks = sorted(maps)
    keys = [(branch, name) for branch in maps[blocks[0]] for name in ("norm", "ratio")]
    fig = Figure(figsize=(_PANEL * len(blocks), _PANEL * len(keys) + 0.5), layout="constrained")
    axes = fig.subplots(len(keys), len(blocks), squeeze=False)
    fig.suptitle("Convpass bypasses: ‖s·bypass‖ per patch and its ratio to the frozen branch beside it")
    labels = {"norm": "‖s·bypass‖", "ratio": "÷ ‖frozen branch‖"}
    for row, (branch, name) in enumerate(keys):
        values = [getattr(maps[block][branch], name)[index].float().cpu().numpy() for block in blocks]
        shared = _colour_norm(np.stack(values), log_scale=False)  # one scale per row: blocks compare directly
        for col, block in enumerate(blocks):
            layer = overlay_map(axes[row, col], image, values[col], log_scale=False, cmap="viridis", norm=shared)
            axes[row, col].set_title(f"block {block} {branch} {name}", fontsize=8)
        fig.colorbar(layer, ax=axes[row, :], shrink=0.8, label=f"{branch}: {labels[name]}")
    return fig


def maps_row_figure(maps: dict[str, torch.Tensor], image: np.ndarray, title: str) -> Figure:
    """Maps (rows, cols) side by side over the model's input image, each with its title and colour scale."""
    fig = Figure(figsize=(3.2 * len(maps), 3.5), layout="constrained")
    fig.suptitle(title)
    for ax, (name, values) in zip(fig.subplots(1, len(maps), squeeze=False)[0], maps.items(), strict=True):
        layer = overlay_map(ax, image, values.float().cpu().numpy(), log_scale=False, cmap="viridis")
        ax.set_title(name, fontsize=9)
        fig.colorbar(layer, ax=ax, shrink=0.8, label=name)
    return fig


KEY_COLOURS = ("#2ca02c", "#ff7f0e", "#e377c2", "#8c564b", "#bcbd22", "#7f7f7f")
"""Fill colours of the numbered key markers of `marked_maps_figure` (the query's frame is cyan)."""


def marked_maps_figure(
        maps: dict[str, torch.Tensor],
        image: np.ndarray,
        patch_size: tuple[int, int],
        query: Query,
        colour_label: str,
        title: str,
        log_scale: bool = False,
        limits: tuple[float, float] | None = None,
        keys: list[tuple[int, int]] | tuple = (),
        cmap: str = "inferno",
        title_colours: dict[str, str] | None = None,
) -> Figure:
    """Maps (rows, cols) side by side over the model's input on one shared colour scale (one colour bar, labelled
    `colour_label`), the query patch framed in cyan and the patches `keys` numbered 1, 2, ... in KEY_COLOURS.

    Args:
        limits: (low, high) of a linear scale; default: from the maps (0 to their maximum, or three decades below it
            on a log scale).
        title_colours: colour of each map's title, by map name (to match the text that refers to it).
    """
    values = {name: m.float().cpu().numpy() for name, m in maps.items()}
    norm = Normalize(*limits) if limits else _colour_norm(np.stack(list(values.values())), log_scale)
    fig = Figure(figsize=(3.2 * len(values) + 1.0, 3.7), layout="constrained")
    fig.suptitle(title, fontsize=10)
    axes = fig.subplots(1, len(values), squeeze=False)[0]
    ph, pw = patch_size
    for ax, (name, v) in zip(axes, values.items(), strict=True):
        layer = overlay_map(ax, image, v, log_scale, cmap=cmap, norm=norm)
        ax.set_title(name, fontsize=9, color=(title_colours or {}).get(name, "black"))
        if not query.is_cls:
            _mark_patch(ax, query.patch, patch_size)
        for number, (row, col) in enumerate(keys, start=1):
            ax.text((col + 0.5) * pw, (row + 0.5) * ph, str(number), ha="center", va="center", fontsize=7,
                    fontweight="bold", color="white",
                    bbox={"boxstyle": "circle,pad=0.15", "facecolor": KEY_COLOURS[(number - 1) % len(KEY_COLOURS)],
                          "edgecolor": "white", "linewidth": 0.8})
    fig.colorbar(layer, ax=axes.tolist(), shrink=0.8, label=colour_label)
    return fig


def conv_channels_figure(conv: torch.Tensor, title: str) -> Figure:
    """The 3×3 convolution's output channels (h, rows, cols) of one bypass, one panel per channel."""
    channels = conv.float().cpu().numpy()
    cols = min(4, len(channels))
    rows = -(-len(channels) // cols)
    fig = Figure(figsize=(_PANEL * cols, _PANEL * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    fig.suptitle(title)
    for ax in axes[len(channels):]:
        ax.set_axis_off()
    limit = float(np.abs(channels).max()) or 1.0  # one symmetric scale: the channels compare directly
    for c, ax in enumerate(axes[:len(channels)]):
        layer = ax.imshow(channels[c], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"channel {c}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(layer, ax=axes.tolist(), shrink=0.8, label="3×3 conv output")
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG and return the path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=110)
    return path
