"""Static matplotlib figures of a trace (used by the CLI; the app draws its own interactive views).

Figures are built with `matplotlib.figure.Figure` directly, never pyplot, so they are safe in threads and
need no display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from . import metrics
from .probe import Trace

__all__ = ["attention_layer_figure", "bypass_figure", "conv_channels_figure", "gates_figure", "save_figure"]

_PANEL = 1.9  # inches per map panel


def _overlay(ax, image: np.ndarray, values: np.ndarray, log_scale: bool, cmap: str = "inferno") -> None:
    """Draw `values` (rows, cols) over `image` (height, width, 3), each cell covering its patch exactly."""
    height, width = image.shape[:2]
    if log_scale:
        top = float(values.max())
        norm = LogNorm(vmin=max(top * 1e-3, 1e-8), vmax=max(top, 1e-7), clip=True)
    else:
        norm = Normalize(vmin=0.0, vmax=float(values.max()) or 1.0)
    ax.imshow(image, extent=(0, width, height, 0))
    ax.imshow(values, extent=(0, width, height, 0), cmap=cmap, norm=norm, alpha=0.6, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _mark_patch(ax, patch: tuple[int, int], patch_size: tuple[int, int]) -> None:
    row, col = patch
    ph, pw = patch_size
    ax.add_patch(Rectangle((col * pw, row * ph), pw, ph, fill=False, edgecolor="cyan", linewidth=1.5))


def attention_layer_figure(
        trace: Trace,
        layer: int,
        image: np.ndarray,
        query: str | tuple[int, int],
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
    if layer in trace.gated_blocks:
        gates = trace.gates[trace.gated_blocks.index(layer)].tolist()
    fig = Figure(figsize=(_PANEL * num_heads, _PANEL * len(parts) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(parts), num_heads, squeeze=False))
    query_label = "class token" if query == "cls" else f"patch (row {query[0]}, col {query[1]})"
    fig.suptitle(f"block {layer}: attention of the {query_label}" + (" (log scale)" if log_scale else ""))
    for row, (name, attention) in enumerate(parts):
        maps = metrics.attention_map(attention[min(index, attention.shape[0] - 1)], trace.grid, query, prefix)
        for head in range(num_heads):
            ax = axes[row, head]
            _overlay(ax, image, maps[head].float().cpu().numpy(), log_scale)
            if query != "cls":
                _mark_patch(ax, query, patch_size)
            title = f"{name} h{head}"
            if gates is not None:
                title += f"\nσ(λ)={gates[head]:.2f}"
            ax.set_title(title, fontsize=8)
    return fig


def gates_figure(gates: torch.Tensor, gated_blocks: list[int]) -> Figure:
    """σ(λ) per GPSA block (rows) and head (columns): 1 = purely positional (convolution-like), 0 = content."""
    values = gates.float().cpu().numpy()
    fig = Figure(figsize=(max(4.5, 1.5 + 0.55 * values.shape[1]), 1.2 + 0.4 * values.shape[0]), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="Reds", vmin=0.0, vmax=1.0, aspect="auto")
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.6 else "black")
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(values.shape[0]), [f"block {b}" for b in gated_blocks])
    ax.set_xlabel("head")
    ax.set_title("gates σ(λ): weight of positional attention", fontsize=10)
    fig.colorbar(image, ax=ax)
    return fig


def bypass_figure(maps: dict[int, dict], image: np.ndarray, index: int = 0) -> Figure:
    """Per Convpass block (columns): bypass norm and bypass/main ratio per patch, for each branch (rows)."""
    blocks = sorted(maps)
    keys = [k for k in ("attn_norm", "attn_ratio", "mlp_norm", "mlp_ratio") if k in maps[blocks[0]]]
    fig = Figure(figsize=(_PANEL * len(blocks), _PANEL * len(keys) + 0.5), layout="constrained")
    axes = fig.subplots(len(keys), len(blocks), squeeze=False)
    fig.suptitle("Convpass bypasses: ‖s·bypass‖ per patch and its ratio to the frozen branch beside it")
    for col, block in enumerate(blocks):
        for row, key in enumerate(keys):
            ax = axes[row, col]
            _overlay(ax, image, maps[block][key][index].float().cpu().numpy(), log_scale=False, cmap="viridis")
            ax.set_title(f"block {block} {key}", fontsize=8)
    return fig


def conv_channels_figure(conv: torch.Tensor, title: str) -> Figure:
    """The 3×3 convolution's output channels (h, rows, cols) of one bypass, one panel per channel."""
    channels = conv.float().cpu().numpy()
    fig = Figure(figsize=(_PANEL * len(channels), _PANEL + 0.5), layout="constrained")
    axes = fig.subplots(1, len(channels), squeeze=False)[0]
    fig.suptitle(title)
    for c, ax in enumerate(axes):
        limit = float(np.abs(channels[c]).max()) or 1.0
        ax.imshow(channels[c], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(f"channel {c}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG and return the path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=110)
    return path
