"""What the explorer measures on captured attention and bypasses.

Conventions: attention (..., N, N) with `num_prefix` non-patch tokens first and rows (the last axis) summing
to 1; patch grids are (rows, cols) in timm's row-major order. Functions return per-head (and per-image)
values and leave averaging to the caller. Distances are in patches unless the name says pixels.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from .curves import GATE_AT_INIT
from .grid import patch_distances
from .models import GPSA
from .query import CLS, Query

if TYPE_CHECKING:
    from .convpass import BypassCapture

__all__ = [
    "GATE_AT_INIT",
    "BypassMaps",
    "GpsaHeads",
    "attention_map",
    "attention_rollout",
    "bypass_maps",
    "gpsa_heads",
    "mean_attention_distance",
    "nonlocality",
    "positional_centres",
    "uniform_nonlocality",
]


def _patch_attention(attention: torch.Tensor, grid: tuple[int, int], num_prefix: int) -> torch.Tensor:
    """Patch-to-patch attention (..., P, P), each row renormalised over the patch keys."""
    num_patches = grid[0] * grid[1]
    if attention.shape[-1] != num_prefix + num_patches or attention.shape[-2] != attention.shape[-1]:
        raise ValueError(f"attention of shape {tuple(attention.shape)} does not fit {num_prefix} prefix tokens "
                         f"and a {grid[0]}x{grid[1]} grid")
    patches = attention[..., num_prefix:, num_prefix:]
    if num_prefix:
        patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(patches.dtype).tiny)
    return patches


def _mean_distance(attention: torch.Tensor, distances: torch.Tensor, grid, num_prefix, per_query) -> torch.Tensor:
    patches = _patch_attention(attention, grid, num_prefix)
    per_query_distance = (patches * distances.to(patches.dtype)).sum(dim=-1)  # (..., P)
    return per_query_distance if per_query else per_query_distance.mean(dim=-1)


def nonlocality(
        attention: torch.Tensor,
        grid: tuple[int, int],
        num_prefix: int = 0,
        per_query: bool = False,
) -> torch.Tensor:
    """ConViT's nonlocality (Eq. 8): attention-weighted query-key distance, in patches.

    D^h = (1/P) Σ_i Σ_j A^h_ij ‖δ_ij‖ over patch queries i and patch keys j. Prefix tokens (the class token)
    are left out as queries and as keys; each query's attention over the patch keys is renormalised to sum
    to 1, so D is "how far, among patches, this head looks". Every query counts, border ones included: a
    border query simply cannot look as far in every direction.

    Args:
        attention: (..., H, N, N) attention one layer really applied, N = num_prefix + rows * cols.
        grid: (rows, cols).
        num_prefix: tokens before the patch tokens.
        per_query: return the distance of every query instead of their mean.

    Returns:
        (..., H) or, with per_query, (..., H, P).
    """
    distances = patch_distances(grid, device=attention.device)
    return _mean_distance(attention, distances, grid, num_prefix, per_query)


def uniform_nonlocality(grid: tuple[int, int]) -> float:
    """The nonlocality of uniform attention on `grid` (every query weighing every patch alike), in patches: where a
    head that ignores position sits, the reference a nonlocality is read against."""
    return float(patch_distances(grid).mean())


def mean_attention_distance(
        attention: torch.Tensor,
        grid: tuple[int, int],
        patch_size: tuple[int, int],
        num_prefix: int = 0,
) -> torch.Tensor:
    """The same attention-weighted distance in pixels of the model input ("mean attention distance" of ViT).

    Args:
        attention: (..., H, N, N).
        grid: (rows, cols).
        patch_size: (height, width) of a patch in pixels.

    Returns:
        (..., H) in pixels.
    """
    distances = patch_distances(grid, spacing=patch_size, device=attention.device)
    return _mean_distance(attention, distances, grid, num_prefix, per_query=False)


def attention_map(
        attention: torch.Tensor,
        grid: tuple[int, int],
        query: Query = CLS,
        num_prefix: int = 0,
) -> torch.Tensor:
    """Where one query token looks: its attention to the patch keys, laid out on the grid.

    Args:
        attention: (..., H, N, N).
        grid: (rows, cols).
        query: the class token (needs num_prefix ≥ 1) or a query patch.
        num_prefix: tokens before the patch tokens.

    Returns:
        (..., H, rows, cols): raw attention weights to the patches (attention to prefix tokens not shown, so a
        map sums to 1 minus the weight on prefix tokens).
    """
    rows, cols = grid
    if attention.shape[-1] != num_prefix + rows * cols:
        raise ValueError(f"attention over {attention.shape[-1]} tokens does not fit {num_prefix} prefix tokens "
                         f"and a {rows}x{cols} grid")
    if query.is_cls:
        if num_prefix < 1:
            raise ValueError("this layer has no class token: choose a query patch (row, col)")
        index = 0
    else:
        row, col = query.patch
        if not (0 <= row < rows and 0 <= col < cols):
            raise ValueError(f"query {query.label} is outside the {rows}x{cols} grid")
        index = num_prefix + row * cols + col
    return attention[..., index, num_prefix:].unflatten(-1, (rows, cols))


def attention_rollout(
        attentions: Sequence[torch.Tensor],
        num_prefix: Sequence[int],
        residual_weight: float = 0.5,
) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): how much each output token draws on each input token.

    Each layer's head-averaged attention is mixed with the identity for the residual stream,
    Â = w·I + (1 - w)·Ā, and the layers are multiplied in order. When the token count grows between layers
    (ConViT's class token joins after the last GPSA block) the new prefix tokens enter with no history: the
    running product is extended by identity rows and columns for them.

    Args:
        attentions: per layer, (B, H, N_l, N_l) with prefix tokens first.
        num_prefix: per layer, the number of prefix tokens; may only grow with depth, patches stay fixed.
        residual_weight: w, the weight of the skip connection.

    Returns:
        (B, N_L, N_L) for the last layer's tokens, rows summing to 1. For the class token's rollout over the
        image, use row 0 from column num_prefix[-1] on.
    """
    rollout: torch.Tensor | None = None
    previous_prefix = None
    for attention, prefix in zip(attentions, num_prefix, strict=True):
        mean = attention.float().mean(dim=1)  # (B, N, N)
        B, N, _ = mean.shape
        eye = torch.eye(N, device=mean.device)
        layer = residual_weight * eye + (1.0 - residual_weight) * mean
        layer = layer / layer.sum(dim=-1, keepdim=True)
        if rollout is None:
            rollout = layer
        else:
            grown = prefix - previous_prefix
            if grown < 0 or rollout.shape[-1] + grown != N:
                raise ValueError("token counts must only grow by new prefix tokens between layers")
            if grown:
                extended = eye.expand(B, N, N).clone()
                extended[:, grown:, grown:] = rollout
                rollout = extended
            rollout = layer @ rollout
        previous_prefix = prefix
    if rollout is None:
        raise ValueError("no attention given")
    return rollout


def positional_centres(pos_proj_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention centres Δ_h and strengths α_h of GPSA heads, read from `pos_proj.weight` (methods.md §1.6).

    The positional logit of head h is -α_h ‖δ - Δ_h‖² + const, with α_h = -w_d and Δ_h = (w_x, w_y) / (2 α_h).

    Args:
        pos_proj_weight: (H, 3) weight rows (w_x, w_y, w_d).

    Returns:
        centres (H, 2) as (dx, dy) in patches (y down), and strengths α (H,). A head with α_h ≤ 0 has no centre
        (its logit does not peak anywhere): its centre is NaN.
    """
    w = pos_proj_weight.detach().float()
    strengths = -w[:, 2]
    centres = w[:, :2] / (2 * strengths[:, None])
    centres[strengths <= 0] = float("nan")
    return centres, strengths


@dataclass
class GpsaHeads:
    """What a GPSA block's parameters say about its heads (no image needed)."""

    block: int
    """Index in model.blocks."""
    gates: torch.Tensor
    """(H,) σ(λ_h): the weight of positional attention (1 - σ goes to content)."""
    centres: torch.Tensor
    """(H, 2) positional centres Δ_h as (dx, dy) in patches; NaN for a head without one (positional_centres)."""
    strengths: torch.Tensor
    """(H,) α_h: how sharply positional attention peaks at Δ_h."""


def gpsa_heads(model: nn.Module) -> list[GpsaHeads]:
    """Gates, centres and strengths of every GPSA block of `model` (detached, float32, on the model's device), in
    block order; empty for a model without GPSA. The one place these are read from the parameters."""
    found = []
    for i, block in enumerate(model.blocks):
        if isinstance(block.attn, GPSA):
            centres, strengths = positional_centres(block.attn.pos_proj.weight)
            found.append(GpsaHeads(i, torch.sigmoid(block.attn.gating_param.detach().float()), centres, strengths))
    return found


@dataclass(frozen=True)
class BypassMaps:
    """Where one Convpass branch of one block acts on the image."""

    norm: torch.Tensor
    """(B, rows, cols): ‖s · bypass‖ per patch."""
    ratio: torch.Tensor
    """(B, rows, cols): ‖s · bypass‖ / ‖main branch‖ per patch (the bypass's share of the update relative to the
    frozen path beside it)."""
    conv: torch.Tensor
    """(B, h, rows, cols): the 3×3 convolution's output channels."""


def bypass_maps(
        bypass: dict[str, BypassCapture],
        grid: tuple[int, int],
        num_prefix: int,
) -> dict[str, BypassMaps]:
    """Where a Convpass block's bypasses act on the image.

    Args:
        bypass: one block's entry of `Trace.bypass` (branch -> capture).
        grid: (rows, cols).
        num_prefix: tokens before the patch tokens.

    Returns:
        For each branch present ('attn', 'mlp'), its maps.
    """
    maps = {}
    for branch, captured in bypass.items():
        norm = captured.output[:, num_prefix:].float().norm(dim=-1)  # (B, P)
        main = captured.main[:, num_prefix:].float().norm(dim=-1)
        maps[branch] = BypassMaps(norm=norm.unflatten(-1, grid),
                                  ratio=(norm / main.clamp_min(1e-12)).unflatten(-1, grid), conv=captured.conv)
    return maps
