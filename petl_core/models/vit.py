"""ViT / DeiT (timm `VisionTransformer`), instrumented.

timm's `Attention` runs fused scaled-dot-product attention, which never materialises the attention weights.
The capturing subclass keeps that exact path whenever no trace is active (one context-variable lookup more),
and computes the weights explicitly, as timm's own non-fused branch does, only inside a trace.
"""
from __future__ import annotations

import torch
from timm.layers import Attention as TimmAttention
from timm.models.vision_transformer import VisionTransformer

from ..capture import active_recorder
from ._adopt import adopt

__all__ = ["Attention", "instrument_vit"]


class Attention(TimmAttention):
    """Multi-head self-attention. Input and output (B, N, D); captures `attention` (B, H, N, N), rows sum to 1."""

    def forward(
            self,
            x: torch.Tensor,
            attn_mask: torch.Tensor | None = None,
            is_causal: bool = False,
    ) -> torch.Tensor:
        recorder = active_recorder()
        if recorder is None:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        if attn_mask is not None or is_causal:
            raise NotImplementedError("tracing masked attention is not supported")
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attention = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
        recorder.save(self, "attention", attention)
        x = (self.attn_drop(attention) @ v).transpose(1, 2).reshape(B, N, self.attn_dim)
        x = self.norm(x)
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))


def instrument_vit(model: VisionTransformer) -> VisionTransformer:
    """Swap every block's timm `Attention` for the capturing version, in place."""
    for block in model.blocks:
        if type(block.attn) is TimmAttention:
            block.attn = adopt(block.attn, Attention)
        elif not isinstance(block.attn, Attention):
            raise ValueError(f"cannot instrument attention of type {type(block.attn).__name__}")
    return model
