"""The equation in numbers: one query's GPSA mix and Convpass update, with the values of one image substituted.

GPSA (methods.md §1.2), query i, key j, head h: A_ij = (1 − σ(λ_h))·C_ij + σ(λ_h)·P_ij, with C the content and P the
positional attention. Convpass (§2.2), each branch of a block: x ← x + main(LN x) + s·bypass(LN x).

Every term is read from a `Trace` (image 0 of the batch). The residual stream x entering a block is the one thing a
trace does not keep: `residual_stream` recomputes it from the model.

>>> eq = gpsa_equation(t, block=2, head=4, query=Query.at(6, 6))
>>> eq.top[0].mix(eq.sigma), eq.top[0].attention   # equal to float precision
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer

from .convpass import BypassCapture
from .metrics import attention_map, bypass_maps
from .probe import Trace
from .query import Query

__all__ = ["BranchTerms", "ConvpassEquation", "GpsaEquation", "KeyWeights", "Weights", "bypass_share",
           "convpass_equation", "gpsa_equation", "residual_stream"]


@dataclass(frozen=True)
class Weights:
    """The three weights of one key (or the summed weights of several) in one query's row."""

    content: float
    """C_ij: content attention softmax(q_i·k_j/√d_h)."""
    positional: float
    """P_ij: positional attention softmax(v_pos·r_ij)."""
    attention: float
    """A_ij: the mixed attention the block applied."""

    def mix(self, sigma: float) -> float:
        """(1 − σ)·content + σ·positional: what the formula gives for A_ij."""
        return (1.0 - sigma) * self.content + sigma * self.positional


@dataclass(frozen=True)
class KeyWeights(Weights):
    """One key patch and its weights."""

    key: int
    """Index of the key among the patch tokens (row-major)."""
    patch: tuple[int, int]
    """(row, col) of the key patch."""


@dataclass(frozen=True)
class GpsaEquation:
    """A_ij = (1 − σ)·C_ij + σ·P_ij for one GPSA block, head and query patch i, over the key patches j."""

    block: int
    head: int
    query: Query
    sigma: float
    """σ(λ_h) as applied (the dial's value under `petl_core.dial.set_gates`)."""
    top: tuple[KeyWeights, ...]
    """The keys with the largest mixed attention, largest first."""
    rest: Weights
    """The summed weights of all other key patches."""
    identity_error: float
    """max_j |A_ij − ((1 − σ)·C_ij + σ·P_ij)| over every key: float rounding only."""
    content: torch.Tensor
    """(rows, cols) C_ij of the query over the key patches."""
    positional: torch.Tensor
    """(rows, cols) P_ij."""
    attention: torch.Tensor
    """(rows, cols) A_ij."""


def gpsa_equation(trace: Trace, block: int, head: int, query: Query, top_k: int = 5) -> GpsaEquation:
    """The terms of GPSA's mix for `query` in `block`, `head` of image 0 of `trace`, itemised for the `top_k` keys
    with the largest mixed attention.

    Raises ValueError (one sentence) for a block without GPSA, a head or query the block does not have.
    """
    if not 0 <= block < len(trace.attention) or trace.gates[block] is None:
        raise ValueError(f"block {block} is not a GPSA block; the GPSA blocks are {trace.gated_blocks}")
    num_heads = trace.attention[block].shape[1]
    if not 0 <= head < num_heads:
        raise ValueError(f"head {head} does not exist: block {block} has heads 0-{num_heads - 1}")
    prefix = trace.num_prefix[block]
    maps = {name: attention_map(getattr(trace, name)[block][0, head], trace.grid, query, prefix).float().cpu()
            for name in ("content", "positional", "attention")}  # each (rows, cols)
    flat = {name: m.flatten() for name, m in maps.items()}  # (P,)
    sigma = float(trace.gates[block][head])
    order = flat["attention"].argsort(descending=True)
    chosen, others = order[:top_k], order[top_k:]
    cols = trace.grid[1]
    top = tuple(KeyWeights(*(float(flat[name][j]) for name in ("content", "positional", "attention")), key=int(j),
                           patch=divmod(int(j), cols)) for j in chosen)
    rest = Weights(*(float(flat[name][others].sum()) for name in ("content", "positional", "attention")))
    mixed = (1.0 - sigma) * flat["content"] + sigma * flat["positional"]
    return GpsaEquation(block, head, query, sigma, top, rest, float((mixed - flat["attention"]).abs().max()),
                        maps["content"], maps["positional"], maps["attention"])


def bypass_share(ratio: torch.Tensor) -> torch.Tensor:
    """‖s·bypass‖ / (‖main‖ + ‖s·bypass‖), in [0, 1], from `metrics.bypass_maps`' ratio ‖s·bypass‖ / ‖main‖: the
    bypass's part of a branch's update (0.5 = as large as the frozen branch beside it)."""
    return ratio / (1.0 + ratio)


def residual_stream(model: VisionTransformer, images: torch.Tensor, block: int) -> torch.Tensor:
    """The residual stream x entering `model.blocks[block]` (B, N, D), computed as timm's forward_features does
    (embedding, position embedding, prefix tokens, then the blocks before `block`), without gradients.

    Args:
        model: a timm VisionTransformer (e.g. with Convpass bypasses), in the mode it was traced in.
        images: (B, C, height, width) as the model takes them.
    """
    if not 0 <= block < len(model.blocks):
        raise ValueError(f"block {block} does not exist: the model has blocks 0-{len(model.blocks) - 1}")
    with torch.no_grad():
        x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
        for earlier in model.blocks[:block]:
            x = earlier(x)
    return x


@dataclass(frozen=True)
class BranchTerms:
    """x ← x + main + s·bypass for one Convpass branch, at the query token; vectors are (D,)."""

    branch: str
    """'attn' (beside attention) or 'mlp' (beside the MLP)."""
    stream: torch.Tensor
    """x: the residual stream entering the branch."""
    main: torch.Tensor
    """The frozen branch's output, main(LN x)."""
    bypass: torch.Tensor
    """s·bypass(LN x): the scaled bypass output, as the branch adds it."""
    share: float
    """bypass_share at the query token."""
    share_map: torch.Tensor
    """(rows, cols) bypass_share of every patch token."""

    @property
    def output(self) -> torch.Tensor:
        """(D,) x + main + s·bypass: the stream leaving the branch."""
        return self.stream + self.main + self.bypass


@dataclass(frozen=True)
class ConvpassEquation:
    """Both updates of one Convpass block (attention branch, then MLP branch) at one query token."""

    block: int
    query: Query
    scale: float
    """s, the factor the block multiplies its bypass outputs by."""
    branches: tuple[BranchTerms, ...]
    """In the order the block applies them."""


def convpass_equation(model: VisionTransformer, images: torch.Tensor, trace: Trace, block: int,
                      query: Query) -> ConvpassEquation:
    """The terms of Convpass block `block`'s update for `query` (a patch, or the class token) in image 0.

    Args:
        model: the model `trace` was made with.
        images: (B, C, height, width): the images `trace` was made from.
        trace: `petl_core.trace(model, images)`.

    Raises ValueError (one sentence) for a block without bypasses or a query the block does not have.
    """
    bypassed = [i for i, entry in enumerate(trace.bypass) if entry]
    if block not in bypassed:
        raise ValueError(f"block {block} has no Convpass bypass; the blocks with one are {bypassed}")
    prefix, (rows, cols) = trace.num_prefix[block], trace.grid
    if query.is_cls and prefix == 0:
        raise ValueError(f"block {block} has no class token: choose a query patch (row, col)")
    if not query.is_cls and not (0 <= query.patch[0] < rows and 0 <= query.patch[1] < cols):
        raise ValueError(f"query {query.label} is outside the {rows}x{cols} grid")
    token = 0 if query.is_cls else prefix + query.patch[0] * cols + query.patch[1]
    device = next(model.parameters()).device
    x = residual_stream(model, images.to(device), block)[0].to(trace.attention[block].device).float()  # (N, D)
    captures = trace.bypass[block]
    maps = bypass_maps(captures, trace.grid, prefix)
    branches = []
    for branch, capture in captures.items():  # 'attn' first: the order the block applies them
        # the query token alone, as a 1×1 grid: the same ratio metric for a patch or the class token
        alone = BypassCapture(capture.output[:1, token:token + 1], capture.main[:1, token:token + 1], capture.conv)
        ratio = bypass_maps({branch: alone}, (1, 1), 0)[branch].ratio
        main, bypass = capture.main[0].float(), capture.output[0].float()  # (N, D)
        branches.append(BranchTerms(branch, x[token], main[token], bypass[token], float(bypass_share(ratio)),
                                    bypass_share(maps[branch].ratio[0])))
        x = x + main + bypass
    return ConvpassEquation(block, query, float(model.blocks[block].scale), tuple(branches))
