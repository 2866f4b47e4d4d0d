"""One forward pass that returns everything the explorer shows (TransformerLens-style capture).

>>> t = trace(model, images)     # model from petl_core.create_model (optionally with add_convpass)
>>> t.attention[3].shape         # (B, H, N_3, N_3), rows sum to 1
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .capture import recording
from .convpass import ConvpassBlock
from .models import GPSA, instrument_is_complete

__all__ = ["Trace", "trace"]

BYPASS_KEYS = ("attn", "attn_main", "attn_conv", "mlp", "mlp_main", "mlp_conv")


@dataclass
class Trace:
    """What one forward pass computed, block by block (index i = model.blocks[i]).

    Shapes: B images, H heads, N_i tokens entering block i (num_prefix[i] prefix tokens first, then the
    rows × cols patch tokens in row-major order), D width, h bypass width. Attention rows (last axis) sum to 1.
    """

    logits: torch.Tensor
    """(B, classes): model(images), up to float rounding (the trace materialises attention, the plain
    forward uses fused attention)."""
    attention: list[torch.Tensor]
    """Per block: (B, H, N_i, N_i) attention weights the block applied (after the gate, before dropout)."""
    content: list[torch.Tensor | None]
    """Per block: GPSA content attention softmax(QKᵀ/√d) (B, H, N_i, N_i); None for other blocks."""
    positional: list[torch.Tensor | None]
    """Per block: GPSA positional attention (1, H, N_i, N_i), the same for every image; None elsewhere."""
    gates: torch.Tensor
    """(number of GPSA blocks, H): σ(λ), the weight of positional attention; (0, 0) without GPSA."""
    gated_blocks: list[int]
    """Index of the block behind each row of `gates`."""
    bypass: list[dict | None]
    """Per block: Convpass captures, None elsewhere. For branch b in 'attn' (and 'mlp' when present):
    b the scaled bypass output (B, N_i, D), b_main the parallel main-branch output (B, N_i, D), b_conv the
    3×3 convolution output (B, h, rows, cols)."""
    grid: tuple[int, int]
    """(rows, cols) of the patch grid."""
    num_prefix: list[int]
    """Per block: tokens before the patch tokens (class token, registers); 0 in ConViT's GPSA blocks."""


def trace(model: nn.Module, images: torch.Tensor) -> Trace:
    """Run `model` once on `images` (B, C, height, width) and capture every block's attention and bypasses.

    Runs without gradients and in whatever mode (eval/train) the model is in. Keeps no state between calls;
    several threads may trace the same model at once.
    """
    if not instrument_is_complete(model):
        raise ValueError("the model is not instrumented: build it with petl_core.create_model or call "
                         "petl_core.instrument(model) first")
    with torch.no_grad(), recording() as recorder:
        logits = model(images)
    grid = tuple(int(s) for s in model.patch_embed.grid_size)
    num_patches = grid[0] * grid[1]
    attention, content, positional, bypass, num_prefix = [], [], [], [], []
    gates, gated_blocks = [], []
    for i, block in enumerate(model.blocks):
        attn = recorder.get(block.attn, "attention")
        attention.append(attn)
        num_prefix.append(attn.shape[-1] - num_patches)
        content.append(recorder.get(block.attn, "content"))
        positional.append(recorder.get(block.attn, "positional"))
        if isinstance(block.attn, GPSA):
            gates.append(torch.sigmoid(block.attn.gating_param.detach()))
            gated_blocks.append(i)
        if isinstance(block, ConvpassBlock):
            captured = {k: recorder.get(block, k) for k in BYPASS_KEYS}
            bypass.append({k: v for k, v in captured.items() if v is not None})
        else:
            bypass.append(None)
    return Trace(
        logits=logits,
        attention=attention,
        content=content,
        positional=positional,
        gates=torch.stack(gates) if gates else logits.new_zeros(0, 0),
        gated_blocks=gated_blocks,
        bypass=bypass,
        grid=grid,
        num_prefix=num_prefix,
    )
