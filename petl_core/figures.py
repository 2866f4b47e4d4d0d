"""Static matplotlib figures of a trace (used by the CLI; the app draws its own interactive views).

Figures are built with `matplotlib.figure.Figure` directly, never pyplot, so they are safe in threads and
need no display.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter
from PIL import Image

from . import metrics
from .probe import Trace
from .query import Query
from .scales import ATTENTION_LINEAR_RANGE, ATTENTION_LOG_RANGE, attention_colour_label

__all__ = [
    "ATTENTION_LINEAR_RANGE",
    "ATTENTION_LOG_RANGE",
    "KEY_COLOURS",
    "attention_codes",
    "attention_colour_label",
    "attention_grid_figure",
    "attention_layer_figure",
    "attention_lut",
    "attention_norm",
    "bypass_figure",
    "class_token_codes",
    "compare_figure",
    "conv_channels_figure",
    "gates_figure",
    "maps_row_figure",
    "marked_maps_figure",
    "panel_background",
    "picture_axes",
    "query_maps",
    "save_figure",
    "value_map",
]

_PANEL = 1.9  # inches per map panel
COMPARE_LABEL_SCALE = 0.8
"""Font size of the compare figure's labels, in points per inch of figure width."""

def attention_norm(log_scale: bool) -> Normalize:
    """The fixed colour scale of attention maps (ATTENTION_LOG_RANGE or ATTENTION_LINEAR_RANGE)."""
    return LogNorm(*ATTENTION_LOG_RANGE, clip=True) if log_scale else Normalize(*ATTENTION_LINEAR_RANGE, clip=True)


def _quantised(weights: torch.Tensor) -> np.ndarray:
    """Attention weights (any shape) as uint8 codes on the fixed log range: 0 at or below ATTENTION_LOG_RANGE[0],
    255 for 1, evenly spaced in log10 between (1/85 of a decade per code)."""
    low, high = np.log10(ATTENTION_LOG_RANGE)
    scaled = (weights.float().clamp_min(1e-12).log10() - low) / (high - low) * 255
    return scaled.round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def attention_codes(trace: Trace, index: int = 0) -> np.ndarray:
    """Every patch query's attention to every patch key, in every block and head, quantised on the fixed log range:
    (blocks, heads, P, P) uint8 with P = rows·cols (`_quantised`; a page draws any query's maps from it without
    asking the server again; `attention_lut` colours it). Blocks with fewer heads than the widest are padded with
    code 0. The weights are the query maps of `query_maps` (raw, prefix tokens not shown)."""
    rows, cols = trace.grid
    codes = np.zeros((len(trace.attention), max(a.shape[1] for a in trace.attention), rows * cols, rows * cols),
                     np.uint8)
    for block, attention in enumerate(trace.attention):
        prefix = trace.num_prefix[block]
        codes[block, :attention.shape[1]] = _quantised(attention[min(index, attention.shape[0] - 1), :, prefix:,
                                                                 prefix:])
    return codes


def class_token_codes(trace: Trace, index: int = 0) -> tuple[np.ndarray, list[bool]]:
    """The class token's attention to every patch key, as `attention_codes` codes it: (blocks, heads, P) uint8, and
    for each block whether it has a class token to ask (ConViT's GPSA blocks have none: their rows are code 0)."""
    rows, cols = trace.grid
    codes = np.zeros((len(trace.attention), max(a.shape[1] for a in trace.attention), rows * cols), np.uint8)
    for block, attention in enumerate(trace.attention):
        if prefix := trace.num_prefix[block]:
            codes[block, :attention.shape[1]] = _quantised(attention[min(index, attention.shape[0] - 1), :, 0,
                                                                     prefix:])
    return codes, [bool(p) for p in trace.num_prefix]


def attention_lut(log_scale: bool) -> np.ndarray:
    """(256, 3) uint8: the colour of each code of `attention_codes` on the attention views' fixed scale (log or
    linear), as the grid figures colour the same weight."""
    low, high = np.log10(ATTENTION_LOG_RANGE)
    weights = 10 ** np.linspace(low, high, 256)
    return (colormaps["inferno"](attention_norm(log_scale)(weights))[:, :3] * 255).round().astype(np.uint8)


def _attention_bar(log_scale: bool) -> tuple[Normalize, str, str]:
    """The colour bar of a mosaic of attention maps: (norm, colour map, label) for `_mosaic_figure`."""
    return attention_norm(log_scale), "inferno", attention_colour_label(log_scale)


def _attention_colour_bar(fig: Figure, axes, log_scale: bool, fontsize: float | None = None) -> None:
    """One colour bar for the attention maps on `axes` (drawn with attention_norm), labelled with its range."""
    norm, cmap, label = _attention_bar(log_scale)
    bar = fig.colorbar(ScalarMappable(norm, cmap), ax=axes, shrink=0.8)
    bar.minorticks_off()  # (the decades say the scale; a log bar's minor labels cost a third of a figure's layout)
    bar.set_label(label, fontsize=fontsize)
    if fontsize:
        bar.ax.tick_params(labelsize=fontsize * 0.8)


def _colour_norm(values: np.ndarray, log_scale: bool) -> Normalize:
    """Log scale: three decades below the map's maximum (weaker weights clip to the bottom colour)."""
    if log_scale:
        top = float(values.max())
        return LogNorm(vmin=max(top * 1e-3, 1e-8), vmax=max(top, 1e-7), clip=True)
    return Normalize(vmin=0.0, vmax=float(values.max()) or 1.0)


def value_map(ax, image: np.ndarray, values: np.ndarray, log_scale: bool, cmap: str = "inferno",
              norm: Normalize | None = None) -> AxesImage:
    """Draw `values` (rows, cols) on the patches of `image` (height, width, 3), each cell covering its patch exactly,
    its colour its value alone (`norm`; default: from 0, or three decades on a log scale, to the map's maximum): the
    picture is not drawn under it, which would tint the colour the scale is read by (`picture_axes` shows it
    beside). Returns the map's layer (for a colour bar)."""
    height, width = image.shape[:2]
    layer = ax.imshow(values, extent=(0, width, height, 0), cmap=cmap, norm=norm or _colour_norm(values, log_scale),
                      interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return layer


def picture_axes(ax, image: np.ndarray, title: str | None = "model input", fontsize: float = 9) -> None:
    """`image` (height, width, 3) on `ax`, beside the maps of it (pixel coordinates, as `value_map`'s)."""
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize)


def _mark_patch(ax, patch: tuple[int, int], patch_size: tuple[int, int]) -> None:
    row, col = patch
    ph, pw = patch_size
    ax.add_patch(Rectangle((col * pw, row * ph), pw, ph, fill=False, edgecolor="cyan", linewidth=1.5))


def attention_layer_figure(
        trace: Trace,
        layer: int,
        image: np.ndarray,
        query: Query,
        index: int = 0,
        log_scale: bool = True,
) -> Figure:
    """Where `query` looks in every head of block `layer`, the model's input image beside the maps, as one mosaic
    image.

    GPSA blocks get three rows (mixed attention, content part, positional part) with each head's σ(λ).
    """
    parts = [("attention", trace.attention[layer])]
    if trace.content[layer] is not None:
        parts += [("content", trace.content[layer]), ("positional", trace.positional[layer])]
    prefix = trace.num_prefix[layer]
    num_heads = trace.attention[layer].shape[1]
    background, cell = panel_background(image, trace.grid)
    panels = []
    for _, attention in parts:
        maps = metrics.attention_map(attention[min(index, attention.shape[0] - 1)], trace.grid, query, prefix)
        panels.append([_framed(background, query, cell)] +
                      _panels(maps, cell, log_scale, query))
    gates = trace.gates[layer].tolist() if trace.gates[layer] is not None else None
    heads = ["model input"] + [f"head {h}" + (f"\nσ(λ)={gates[h]:.2f}" if gates else "") for h in range(num_heads)]
    return _mosaic_figure(panels, [name for name, _ in parts], heads,
                          f"block {layer}: attention of the {query.label}" + (" (log scale)" if log_scale else ""),
                          bar=_attention_bar(log_scale))


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


def panel_background(image: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, int]:
    """`image` (height, width, 3) in [0, 1] resized for mosaic panels of `grid` patches: (rows·cell, cols·cell, 3)
    and `cell`, the pixels per patch (about 72 pixels a panel side)."""
    rows, cols = grid
    cell = max(2, 72 // max(rows, cols))
    resized = Image.fromarray((image * 255).round().astype(np.uint8)).resize((cols * cell, rows * cell),
                                                                             Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64) / 255, cell


_PT = 1 / 72  # inches per point


def _text_inches(text: str, size: float) -> tuple[float, float]:
    """A generous (width, height) in inches of `text` at `size` points: DejaVu Sans averages under 0.62 em a
    character, lines are 1.25 em apart. Enough to lay a figure out without asking the renderer, whose text
    measuring (constrained layout's) cost more than drawing the figure."""
    lines = text.split("\n")
    return max(map(len, lines)) * 0.62 * size * _PT, len(lines) * 1.25 * size * _PT


def _mosaic_figure(panels: list[list[np.ndarray | None]], row_labels: list[str], column_labels: list[str],
                   title: str, bar: tuple[Normalize, str, str] | None = None,
                   row_bars: list[tuple[Normalize, str, str]] | None = None, panel_inches: float = 1.1,
                   gap: int = 3, blank_text: dict[int, str] | None = None) -> Figure:
    """A figure of one image tiling `panels` (rows × columns of RGB images (h, w, 3) in [0, 1], all of one size, each
    shown `panel_inches` wide; None is a light gray cell, with `blank_text[row]` in it if given) with `gap` white
    pixels between them, rows and columns labelled, `title` above; with `bar` (norm, colour map, label) one colour
    bar under the image, with `row_bars` one beside each row. Laid out by hand from the labels' lengths: one image
    instead of an axes per panel, and no layout engine, make it several times faster to draw and save, and every
    label (a colour bar's too) lies inside the figure whatever the number of rows."""
    height, width = next(p for row in panels for p in row if p is not None).shape[:2]
    rows, cols = len(panels), len(panels[0])
    mosaic = np.ones((rows * (height + gap) - gap, cols * (width + gap) - gap, 3))
    scale = panel_inches / width  # inches per mosaic pixel
    image_w, image_h = mosaic.shape[1] * scale, mosaic.shape[0] * scale
    label_size, title_size, pad = 7, 9, 0.08
    left = pad + max(_text_inches(label, label_size)[0] for label in row_labels) + 0.05
    top = pad + _text_inches(title, title_size)[1] + max(_text_inches(c, label_size)[1] for c in column_labels) + 0.1
    bottom, right = pad, pad
    # under a bar: its tick labels (1.7 em: room for an exponent, should a formatter write one) and its label
    under_bar = 0.05 + 1.7 * label_size * _PT + 0.04 + 1.5 * (label_size + 1) * _PT
    if bar:  # a gap, the bar, what is under it
        bottom += 0.12 + 0.12 + under_bar
    if row_bars:  # a gap, the bar, tick labels of up to 5 characters at 6 pt, the label (turned)
        right += 0.08 + 0.12 + _text_inches("-0.00", 6)[0] + 0.05 + _text_inches("x", label_size)[1]
    # a title or bar label wider than the rest widens the figure on both sides
    widest = max(_text_inches(title, title_size)[0], _text_inches(bar[2], label_size + 1)[0] if bar else 0)
    spare = max(0.0, widest + 2 * pad - (left + image_w + right)) / 2
    left, right = left + spare, right + spare
    fig_w, fig_h = left + image_w + right, top + image_h + bottom
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, image_w / fig_w, image_h / fig_h))
    for r, row in enumerate(panels):
        for c, panel in enumerate(row):
            top_px, left_px = r * (height + gap), c * (width + gap)
            mosaic[top_px:top_px + height, left_px:left_px + width] = 0.85 if panel is None else panel
            if panel is None and (blank_text or {}).get(r):
                ax.text(left_px + width / 2, top_px + height / 2, blank_text[r], ha="center", va="center",
                        fontsize=6)
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    # labels as plain text, not ticks: an axis's ticks cost more to make and draw than the rest of the figure
    for c, label in enumerate(column_labels):
        ax.annotate(label, (c * (width + gap) + width / 2, 1), xycoords=("data", "axes fraction"), xytext=(0, 3),
                    textcoords="offset points", ha="center", va="bottom", fontsize=label_size)
    for r, label in enumerate(row_labels):
        ax.annotate(label, (0, r * (height + gap) + height / 2), xycoords=("axes fraction", "data"),
                    xytext=(-3, 0), textcoords="offset points", ha="right", va="center", fontsize=label_size)
    fig.text((left + image_w / 2) / fig_w, 1 - pad / fig_h, title, ha="center", va="top", fontsize=title_size)
    if bar:
        norm, cmap, label = bar
        bar_w = min(image_w, 4.0)
        cax = fig.add_axes(((left + (image_w - bar_w) / 2) / fig_w, (pad + under_bar) / fig_h, bar_w / fig_w,
                            0.12 / fig_h))
        colour_bar = fig.colorbar(ScalarMappable(norm, cmap), cax=cax, orientation="horizontal")
        colour_bar.minorticks_off()  # (the decades say a log scale)
        # plain numbers (0.001 … 1, as the page's hover canvas writes them): no mathtext to parse for 10⁻³
        colour_bar.ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        colour_bar.set_label(label, fontsize=label_size + 1)
        colour_bar.ax.tick_params(labelsize=label_size)
    for row, (norm, cmap, label) in enumerate(row_bars or []):
        colour_bar = fig.colorbar(ScalarMappable(norm, cmap), cax=ax.inset_axes(
            (1 + 0.08 / image_w, 1 - (row + 0.9) / rows, 0.12 / image_w, 0.8 / rows)))
        colour_bar.set_label(label, fontsize=label_size)
        colour_bar.ax.tick_params(labelsize=6)
    return fig


def _coloured(values: np.ndarray, norm: Normalize, cmap: str, cell: int) -> np.ndarray:
    """`values` (..., rows, cols) as RGB panels (..., rows·cell, cols·cell, 3), each cell `cell` pixels wide and its
    value's colour alone (never blended with the picture: the mosaics show it in a column of its own). Many panels
    in one call cost about what one does (the colour map's per-call overhead dominates a 12×12 map)."""
    normed = norm(values.reshape(-1)).reshape(values.shape)  # (a log norm takes 1-d or 2-d values only)
    return np.repeat(np.repeat(colormaps[cmap](normed)[..., :3], cell, axis=-3), cell, axis=-2)


def _framed(panel: np.ndarray, query: Query, cell: int) -> np.ndarray:
    """A copy of `panel` with the query patch framed in cyan (none for the class token)."""
    panel = panel.copy()
    if not query.is_cls:
        r, c = query.patch
        frame = panel[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell]
        frame[[0, -1], :] = frame[:, [0, -1]] = (0.0, 1.0, 1.0)
    return panel


def _panels(maps: torch.Tensor, cell: int, log_scale: bool, query: Query) -> list[np.ndarray]:
    """The maps of a mosaic: `maps` (heads, rows, cols) coloured on the fixed attention scale, each cell `cell`
    pixels wide; the query patch framed in cyan."""
    coloured = _coloured(maps.float().cpu().numpy(), attention_norm(log_scale), "inferno", cell)
    return [_framed(panel, query, cell) for panel in coloured]


def attention_grid_figure(
        trace: Trace,
        image: np.ndarray,
        query: Query,
        index: int = 0,
        log_scale: bool = True,
) -> Figure:
    """Every block (rows) and head (columns): where `query` looks, the model's input image in the first column (a
    map's colour is its value alone).

    Drawn as one mosaic image (a panel per head and block) rather than one axes per panel: several times faster
    to draw, and a click on a patch waits for it.
    """
    num_layers = len(trace.attention)
    num_heads = max(a.shape[1] for a in trace.attention)
    background, cell = panel_background(image, trace.grid)
    picture = _framed(background, query, cell)
    maps = [query_maps(trace, layer, query, index) for layer in range(num_layers)]
    coloured = [None if m is None else _panels(m, cell, log_scale, query) for m in maps]
    panels = [[picture] + [None if c is None or head >= len(c) else c[head] for head in range(num_heads)]
              for c in coloured]
    return _mosaic_figure(panels, [f"block {b}" for b in range(num_layers)],
                          ["model input"] + [f"head {h}" for h in range(num_heads)],
                          f"attention of the {query.label}, every block and head" +
                          (" (log scale)" if log_scale else ""), bar=_attention_bar(log_scale), panel_inches=0.95,
                          blank_text={layer: "no class\ntoken" for layer, m in enumerate(maps) if m is None})


def compare_figure(
        panels: list[tuple[str, Trace, np.ndarray, tuple[int, int]]],
        layer: int,
        query: Query,
        log_scale: bool = True,
) -> Figure:
    """Several models (rows: label, trace, input image, patch size) at the same block and query: each head and
    their mean (last column), on the fixed attention scale with one colour bar."""
    num_heads = max(t.attention[min(layer, len(t.attention) - 1)].shape[1] for _, t, _, _ in panels)
    width = _PANEL * (num_heads + 2) + 4.0  # the picture, the heads, their mean; the row labels and the colour bar
    fig = Figure(figsize=(width, _PANEL * len(panels) + 0.8), layout="constrained")
    # the page shrinks the figure to its width: labels scale with it so they stay about 11 px on a 1,000 px page
    label_size = max(10.0, COMPARE_LABEL_SCALE * width)
    grid = fig.subplots(len(panels), num_heads + 2, squeeze=False)
    fig.suptitle(f"block {layer}, attention of the {query.label}" + (" (log scale)" if log_scale else ""),
                 fontsize=label_size)
    axes = grid[:, 1:]  # (the picture in the first column)
    for row, (label, trace, image, patch_size) in enumerate(panels):
        picture_axes(grid[row, 0], image, "model input" if row == 0 else None, fontsize=label_size * 0.8)
        if not query.is_cls:
            _mark_patch(grid[row, 0], query.patch, patch_size)
        # horizontal, so a model's name reads without turning one's head
        grid[row, 0].set_ylabel(label, fontsize=label_size, rotation=0, ha="right", va="center")
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
                value_map(ax, image, values.float().cpu().numpy(), log_scale, norm=attention_norm(log_scale))
                if not query.is_cls:
                    _mark_patch(ax, query.patch, patch_size)
            if row == 0:
                ax.set_title("mean of heads" if is_mean else f"head {col}", fontsize=label_size * 0.8)
    _attention_colour_bar(fig, grid.ravel().tolist(), log_scale, fontsize=label_size * 0.8)
    return fig


def gates_figure(gates: torch.Tensor, gated_blocks: list[int]) -> Figure:
    """σ(λ) per GPSA block (rows) and head (columns): 1 = purely positional (convolution-like), 0 = content. Coloured
    on a diverging scale over [0, 1], white at the initial value σ(1) (marked on the colour bar): red heads became
    more positional than at init, blue ones more content-based."""
    values = gates.float().cpu().numpy()
    rows, cols = values.shape
    init_label = f"{metrics.GATE_AT_INIT:.3f} = σ(1), init"
    # laid out by hand (see _text_inches): the block labels, the cells, the bar with its tick labels and label
    left = 0.1 + _text_inches(f"block {max(gated_blocks)}", 10)[0] + 0.1
    top, bottom = 0.1 + _text_inches("g", 10)[1] + 0.1, 0.1 + 2 * _text_inches("0", 10)[1] + 0.15
    cells_w, cells_h = 0.55 * cols, max(0.4 * rows, 1.4)  # (tall enough for the bar's four ticks)
    right = 0.15 + 0.15 + 0.1 + _text_inches(init_label, 10)[0] + 0.1 + _text_inches("σ", 10)[1] + 0.1
    fig_w, fig_h = left + cells_w + right, top + cells_h + bottom
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left / fig_w, bottom / fig_h, cells_w / fig_w, cells_h / fig_h))
    cax = fig.add_axes(((left + cells_w + 0.15) / fig_w, bottom / fig_h, 0.15 / fig_w, cells_h / fig_h))
    image = ax.imshow(values, cmap="RdBu_r", norm=TwoSlopeNorm(metrics.GATE_AT_INIT, 0.0, 1.0), aspect="auto")
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if abs(v - metrics.GATE_AT_INIT) > 0.4 else "black")
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]), [f"block {b}" for b in gated_blocks])
    ax.set_xlabel("head")
    ax.set_title("gates σ(λ): weight of positional attention", fontsize=10)
    bar = fig.colorbar(image, cax=cax, label="σ(λ)")
    bar.set_ticks([0.0, 0.5, metrics.GATE_AT_INIT, 1.0], labels=["0", "0.5", init_label, "1"])
    return fig


def bypass_figure(maps: dict[int, dict[str, metrics.BypassMaps]], image: np.ndarray, index: int = 0) -> Figure:
    """Per Convpass block (columns): bypass norm and bypass/main ratio per patch, for each branch (rows), over the
    model's input, one colour scale per row (blocks compare directly), as one mosaic image."""
    blocks = sorted(maps)
    keys = [(branch, name) for branch in maps[blocks[0]] for name in ("norm", "ratio")]
    grid = tuple(maps[blocks[0]][keys[0][0]].norm[index].shape)
    background, cell = panel_background(image, grid)
    labels = {"norm": "‖s·bypass‖", "ratio": "÷ ‖frozen‖"}  # (short: a bar's label fits its row's height)
    panels, norms = [], []
    for branch, name in keys:
        values = [getattr(maps[block][branch], name)[index].float().cpu().numpy() for block in blocks]
        norms.append(_colour_norm(np.stack(values), log_scale=False))
        panels.append([background] + [_coloured(v, norms[-1], "viridis", cell) for v in values])
    return _mosaic_figure(panels, [f"{branch} {name}" for branch, name in keys],
                          ["model input"] + [f"block {b}" for b in blocks],
                          "Convpass bypasses: ‖s·bypass‖ per patch and its ratio to the frozen branch beside it",
                          row_bars=[(norm, "viridis", labels[name])  # each bar beside its row
                                    for (branch, name), norm in zip(keys, norms, strict=True)])


def maps_row_figure(maps: dict[str, torch.Tensor], image: np.ndarray, title: str) -> Figure:
    """Maps (rows, cols) side by side, the model's input image first, each with its title and colour scale. Laid
    out by hand from the labels' lengths, as `_mosaic_figure` is (constrained layout's text measuring took most of
    the figure's time): every label lies inside the figure."""
    panel, pad, gap, title_size, label_size, tick_size = 2.4, 0.1, 0.2, 12, 9, 8
    # each colour bar's label (turned) wrapped to the bar's length
    labels = {name: textwrap.fill(name, int(0.8 * panel / _text_inches("x", label_size)[0])) for name in maps}
    lines = max(label.count("\n") + 1 for label in labels.values())
    # beside a map: a gap, its colour bar, tick labels (up to 7 characters), its label
    bar_room = (0.08 + 0.12 + 0.05 + _text_inches("0.00000", tick_size)[0] + 0.08
                + _text_inches("\n".join("x" * lines), label_size)[1])
    names = ["model input", *maps]
    widths = [max(panel, _text_inches(name, label_size)[0]) + (bar_room if i else 0) for i, name in enumerate(names)]
    top = pad + _text_inches(title, title_size)[1] + 0.05 + _text_inches("x", label_size)[1] + 0.05
    fig_w = max(2 * pad + sum(widths) + gap * (len(names) - 1), _text_inches(title, title_size)[0] + 2 * pad)
    fig_h = top + panel + pad
    fig = Figure(figsize=(fig_w, fig_h))
    fig.suptitle(title, fontsize=title_size, y=1 - pad / fig_h, va="top")
    x = (fig_w - sum(widths) - gap * (len(names) - 1)) / 2
    for i, (name, width) in enumerate(zip(names, widths, strict=True)):
        left = x + (width - (bar_room if i else 0) - panel) / 2
        ax = fig.add_axes((left / fig_w, pad / fig_h, panel / fig_w, panel / fig_h))
        if i == 0:
            picture_axes(ax, image, fontsize=label_size)
        else:
            layer = value_map(ax, image, maps[name].float().cpu().numpy(), log_scale=False, cmap="viridis")
            ax.set_title(name, fontsize=label_size)
            cax = fig.add_axes(((left + panel + 0.08) / fig_w, (pad + 0.1 * panel) / fig_h, 0.12 / fig_w,
                                0.8 * panel / fig_h))
            bar = fig.colorbar(layer, cax=cax)
            bar.ax.tick_params(labelsize=tick_size)
            bar.set_label(labels[name], fontsize=label_size)
        x += width + gap
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
    """Maps (rows, cols) side by side after the model's input on one shared colour scale (one colour bar, labelled
    `colour_label`), the query patch framed in cyan and the patches `keys` numbered 1, 2, ... in KEY_COLOURS.

    Args:
        limits: (low, high) of the scale (linear or log); default: from the maps (0 to their maximum, or three
            decades below it on a log scale).
        title_colours: colour of each map's title, by map name (to match the text that refers to it).
    """
    values = {name: m.float().cpu().numpy() for name, m in maps.items()}
    if limits:
        norm = LogNorm(*limits, clip=True) if log_scale else Normalize(*limits)
    else:
        norm = _colour_norm(np.stack(list(values.values())), log_scale)
    fig = Figure(figsize=(3.2 * (len(values) + 1) + 1.0, 3.7), layout="constrained")
    fig.suptitle(title, fontsize=10)
    picture, *axes = fig.subplots(1, len(values) + 1, squeeze=False)[0]
    picture_axes(picture, image)
    if not query.is_cls:
        _mark_patch(picture, query.patch, patch_size)
    ph, pw = patch_size
    for ax, (name, v) in zip(axes, values.items(), strict=True):
        layer = value_map(ax, image, v, log_scale, cmap=cmap, norm=norm)
        ax.set_title(name, fontsize=9, color=(title_colours or {}).get(name, "black"))
        if not query.is_cls:
            _mark_patch(ax, query.patch, patch_size)
        for number, (row, col) in enumerate(keys, start=1):
            ax.text((col + 0.5) * pw, (row + 0.5) * ph, str(number), ha="center", va="center", fontsize=10,
                    fontweight="bold", color="white",
                    bbox={"boxstyle": "circle,pad=0.2", "facecolor": KEY_COLOURS[(number - 1) % len(KEY_COLOURS)],
                          "edgecolor": "white", "linewidth": 1.0})
    fig.colorbar(layer, ax=axes, shrink=0.8, label=colour_label)
    return fig


def conv_channels_figure(conv: torch.Tensor, title: str) -> Figure:
    """The 3×3 convolution's output channels (h, rows, cols) of one bypass, on one symmetric colour scale (the
    channels compare directly), as one mosaic image of rows of 4."""
    channels = conv.float().cpu().numpy()
    cols = min(4, len(channels))
    rows = -(-len(channels) // cols)
    limit = float(np.abs(channels).max()) or 1.0
    norm = Normalize(-limit, limit)
    cell = max(2, 72 // max(channels.shape[1:]))
    panels = [[_coloured(channels[r * cols + c], norm, "RdBu_r", cell) if r * cols + c < len(channels) else None
               for c in range(cols)] for r in range(rows)]
    return _mosaic_figure(panels, [f"channels {r * cols}-{min((r + 1) * cols, len(channels)) - 1}"
                                   for r in range(rows)], [f"+{c}" for c in range(cols)], title,
                          bar=(norm, "RdBu_r", "3×3 conv output"), panel_inches=1.3)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG and return the path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=110, pil_kwargs={"compress_level": 1})  # (zlib's fastest: files ~1.3× larger)
    return path
