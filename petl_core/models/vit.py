"""ViT / DeiT (timm `VisionTransformer`), instrumented.

timm's `Attention` runs fused scaled-dot-product attention, which never materialises the attention weights.
The capturing subclass keeps that exact path whenever no trace is active (one context-variable lookup more),
and computes the weights explicitly, as timm's own non-fused branch does, only inside a trace.
"""
from __future__ import annotations

import torch
from timm.layers import Attention as TimmAttention
from timm.models.vision_transformer import ParallelThingsBlock, VisionTransformer
from torch import nn

from ..capture import active_recorder
from ._adopt import adopt, renamed

__all__ = ["Attention", "instrument_vit"]


class Attention(TimmAttention):
    """Multi-head self-attention. Input and output (B, N, D); captures `attention` (B, H, N, N), rows sum to 1.

    Scripted (torch.jit.script), it is timm's `Attention`: TorchScript compiles timm's forward and never the
    capture, which needs Python's context variables.
    """

    _timm_forward = renamed(TimmAttention.forward, "_timm_forward")

    def forward(
            self,
            x: torch.Tensor,
            attn_mask: torch.Tensor | None = None,
            is_causal: bool = False,
    ) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._timm_forward(x, attn_mask=attn_mask, is_causal=is_causal)
        return self._forward(x, attn_mask, is_causal)

    @torch.jit.unused
    def _forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
        recorder = active_recorder()
        if recorder is None:
            return self._timm_forward(x, attn_mask=attn_mask, is_causal=is_causal)
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


def _attention_holders(block: nn.Module) -> list[nn.Module]:
    """The modules of one ViT block whose `attn` is an attention: the block, or each branch of a
    `ParallelThingsBlock`."""
    if isinstance(block, ParallelThingsBlock):
        return list(block.attns)
    if not isinstance(getattr(block, "attn", None), nn.Module):
        raise ValueError(f"cannot instrument a {type(block).__name__}: it has no `attn` module")
    return [block]


def instrument_vit(model: VisionTransformer) -> VisionTransformer:
    """Swap every timm `Attention` of every block for the capturing version, in place.

    Raises ValueError, leaving the model as it was, for a block or attention type it does not know.
    """
    holders = [(i, holder) for i, block in enumerate(model.blocks) for holder in _attention_holders(block)]
    for i, holder in holders:
        if type(holder.attn) is not TimmAttention and not isinstance(holder.attn, Attention):
            raise ValueError(f"cannot instrument attention of type {type(holder.attn).__name__} (block {i})")
    for _, holder in holders:
        if type(holder.attn) is TimmAttention:
            holder.attn = adopt(holder.attn, Attention)
    return model
