"""One forward pass that returns everything the explorer shows (TransformerLens-style capture).

>>> t = trace(model, images)     # model from petl_core.create_model (optionally with add_convpass)
>>> t.attention[3].shape         # (B, H, N_3, N_3), rows sum to 1
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from .capture import recording
from .convpass import BypassCapture, ConvpassBlock
from .dial import gate_override
from .metrics import GpsaHeads, gpsa_heads
from .models import instrument_is_complete

__all__ = ["Trace", "trace"]



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
    queries: list[torch.Tensor | None]
    """Per block: GPSA queries (B, H, N_i, d), unscaled: content = softmax(queries · keysᵀ · d^-1/2); None
    elsewhere."""
    keys: list[torch.Tensor | None]
    """Per block: GPSA keys (B, H, N_i, d); None elsewhere."""
    gates: list[torch.Tensor | None]
    """Per block: GPSA's σ(λ) (H,), the weight of positional attention (as set, under `petl_core.dial.set_gates`);
    None for other blocks."""
    centres: list[torch.Tensor | None]
    """Per block: GPSA's positional centres Δ_h (H, 2) as (dx, dy) in patches (metrics.positional_centres);
    None for other blocks."""
    strengths: list[torch.Tensor | None]
    """Per block: GPSA's positional strengths α_h (H,); None for other blocks."""
    bypass: list[dict[str, BypassCapture] | None]
    """Per block: the Convpass captures by branch ('attn', and 'mlp' when present); None for other blocks."""
    grid: tuple[int, int]
    """(rows, cols) of the patch grid."""
    num_prefix: list[int]
    """Per block: tokens before the patch tokens (class token, registers); 0 in ConViT's GPSA blocks."""

    @property
    def gated_blocks(self) -> list[int]:
        """Indices of the GPSA blocks (those with gates)."""
        return [i for i, g in enumerate(self.gates) if g is not None]

    @property
    def gate_matrix(self) -> torch.Tensor:
        """(number of GPSA blocks, H): the gates of `gated_blocks`, one row each; (0, 0) without GPSA."""
        rows = [g for g in self.gates if g is not None]
        return torch.stack(rows) if rows else self.logits.new_zeros(0, 0)

    def to(self, device: torch.device | str) -> Trace:
        """A copy with every tensor on `device`."""
        def move(value):
            if isinstance(value, torch.Tensor):
                return value.to(device)
            if isinstance(value, list):
                return [move(v) for v in value]
            if isinstance(value, dict):
                return {k: move(v) for k, v in value.items()}
            if isinstance(value, BypassCapture):
                return value.to(device)
            return value

        return Trace(**{f.name: move(getattr(self, f.name)) for f in fields(self)})


def _applied_gates(attention: nn.Module, heads: GpsaHeads) -> torch.Tensor:
    """(H,) the gates the block mixed with: the dial's, when one is set in this context, else σ(λ)."""
    dialled = gate_override(attention)
    return heads.gates if dialled is None else dialled.detach().float()


def trace(model: nn.Module, images: torch.Tensor) -> Trace:
    """Run `model` once on `images` (B, C, height, width) and capture every block's attention and bypasses.

    Runs without gradients and in whatever mode (eval/train) the model is in. Keeps no state between calls;
    several threads may trace the same model at once.
    """
    parallel = [type(b).__name__ for b in getattr(model, "blocks", []) if not hasattr(b, "attn")]
    if parallel:
        raise ValueError(f"trace reads one attention per block, and a {parallel[0]} has several: capture them with "
                         "petl_core.capture.recording() and Recorder.get(module, 'attention')")
    if not instrument_is_complete(model):
        raise ValueError("the model is not instrumented: build it with petl_core.create_model or call "
                         "petl_core.instrument(model) first")
    with torch.no_grad(), recording() as recorder:
        logits = model(images)
    grid = tuple(int(s) for s in model.patch_embed.grid_size)
    num_patches = grid[0] * grid[1]
    attention, content, positional, queries, keys, bypass, num_prefix = [], [], [], [], [], [], []
    heads = {h.block: h for h in gpsa_heads(model)}
    for block in model.blocks:
        attn = recorder.get(block.attn, "attention")
        attention.append(attn)
        num_prefix.append(attn.shape[-1] - num_patches)
        content.append(recorder.get(block.attn, "content"))
        positional.append(recorder.get(block.attn, "positional"))
        queries.append(recorder.get(block.attn, "queries"))
        keys.append(recorder.get(block.attn, "keys"))
        if isinstance(block, ConvpassBlock):
            bypass.append({branch: BypassCapture(*(recorder.get(block, f"{branch}{part}")
                                                   for part in ("", "_main", "_conv")))
                           for branch in ("attn", "mlp") if recorder.get(block, branch) is not None})
        else:
            bypass.append(None)
    return Trace(
        logits=logits,
        attention=attention,
        content=content,
        positional=positional,
        queries=queries,
        keys=keys,
        gates=[_applied_gates(model.blocks[i].attn, heads[i]) if i in heads else None for i in range(len(attention))],
        centres=[heads[i].centres if i in heads else None for i in range(len(attention))],
        strengths=[heads[i].strengths if i in heads else None for i in range(len(attention))],
        bypass=bypass,
        grid=grid,
        num_prefix=num_prefix,
    )
