"""ConViT (d'Ascoli et al., ICML 2021, arXiv 2103.10697), instrumented.

The model stays timm's `ConVit`: blocks, parameters and state-dict keys are untouched, so `convit_*.fb_in1k`
and any timm-format file load unchanged. Only the attention modules are swapped for subclasses of timm's
`GPSA` and `MHSA` that

* take the positional attention softmax(v_pos · r_ij) from a per-resolution cache as (1, H, N, N) instead of
  pushing a batch-expanded (B, N, N, 3) tensor through `pos_proj` on every call (it does not depend on the
  image; recomputed whenever `pos_proj` changes, and never cached while it is being trained);
* mix content and positional attention with one `lerp` and skip timm's renormalisation, which is a numerical
  no-op (a convex combination of two row-stochastic matrices is row-stochastic);
* use fused scaled-dot-product attention when nothing is being captured, and otherwise materialise and hand
  the queries, keys, content, positional and mixed attention to the active trace (`petl_core.capture`). They
  materialise it too, through `attn_drop` as timm's modules always do, when timm's tools watch it
  (`weights_observed`).

Scripted (torch.jit.script), they are timm's modules: TorchScript compiles timm's forward, never the capture.
The methods they inherit return timm's numbers: the GPSA forward keeps timm's relative-index buffer at the current
grid as timm's does, though it does not read it, and `GPSA.get_attention` updates it itself.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.models import convit as timm_convit

from ..capture import active_recorder, weights_observed
from ..dial import gate_override
from ..grid import patch_offsets
from ._adopt import adopt, renamed

__all__ = ["GPSA", "MHSA", "instrument_convit"]


def _square_grid(num_tokens: int) -> tuple[int, int]:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"GPSA needs a square patch grid, got {num_tokens} tokens")
    return side, side


def _positional_mix(positional: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """positional @ v for positional (1, H, N, N) and v (B, H, N, d), as (B, H, N, d): one (N, N) @ (N, B·d) product
    per head, where broadcasting would copy the positional attention once per image."""
    B, H, N, d = v.shape
    mixed = positional[0] @ v.permute(1, 2, 0, 3).reshape(H, N, B * d)  # (H, N, B·d)
    return mixed.view(H, N, B, d).permute(2, 0, 1, 3)


class GPSA(timm_convit.GPSA):
    """Gated positional self-attention, A = (1 - σ(λ)) · softmax(QKᵀ/√d) + σ(λ) · softmax(v_pos · r).

    Input and output (B, N, D) with N = S² patch tokens (no class token). Captures, per call:
    `queries` and `keys` (B, H, N, d) (content = softmax(queries·keysᵀ·scale)), `content` (B, H, N, N), `positional`
    (1, H, N, N) and `attention` (B, H, N, N), rows summing to 1.
    """

    _positional_cache: tuple[tuple, torch.Tensor] | None = None
    __jit_ignored_attributes__ = ["_positional_cache"]  # (a Python-side cache TorchScript cannot type)

    def positional_attention(self, num_tokens: int, dtype: torch.dtype) -> torch.Tensor:
        """softmax_j(v_pos^h · r_ij + b^h) as (1, H, N, N), rows summing to 1."""
        weight, bias = self.pos_proj.weight, self.pos_proj.bias
        trainable = torch.is_grad_enabled() and (weight.requires_grad or bias.requires_grad)
        # Parameter version counters move on every in-place update (optimizer step, load_state_dict).
        key = (num_tokens, weight.device, dtype, id(weight), weight._version, id(bias), bias._version)
        cached = self._positional_cache
        if not trainable and cached is not None and cached[0] == key:
            return cached[1]
        offsets = patch_offsets(_square_grid(num_tokens), device=weight.device, dtype=weight.dtype)
        rel = torch.cat((offsets, offsets.square().sum(-1, keepdim=True)), dim=-1)  # (N, N, 3): dx, dy, d²
        logits = F.linear(rel, weight, bias)  # (N, N, H)
        positional = logits.permute(2, 0, 1).softmax(dim=-1).unsqueeze(0).to(dtype)  # (1, H, N, N)
        if not trainable:
            self._positional_cache = (key, positional)
        return positional

    _timm_forward = renamed(timm_convit.GPSA.forward, "_timm_forward")
    _timm_get_attention = renamed(timm_convit.GPSA.get_attention, "_timm_get_attention")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._timm_forward(x)
        return self._forward(x)

    def get_attention(self, x: torch.Tensor) -> torch.Tensor:
        """timm's mixed attention (B, H, N, N) of x (B, N, C), at x's number of patches."""
        self._keep_rel_indices(x.shape[1])
        return self._timm_get_attention(x)

    def _keep_rel_indices(self, num_tokens: int) -> None:
        """Keep timm's `rel_indices` buffer at the grid of the last call, as timm's forward does: our forward does
        not read it, timm's inherited methods do."""
        if self.rel_indices.shape[1] != num_tokens:
            self.rel_indices = self.get_rel_indices(num_tokens)

    @torch.jit.unused
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        H = self.num_heads
        self._keep_rel_indices(N)
        q, k = self.qk(x).reshape(B, N, 2, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, d) each
        v = self.v(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)  # (B, H, N, d)
        positional = self.positional_attention(N, q.dtype)  # (1, H, N, N)
        dialled = gate_override(self)  # the inductive-bias dial of this call, if any (petl_core.dial)
        gate = (torch.sigmoid(self.gating_param) if dialled is None else dialled).view(1, H, 1, 1).to(q.dtype)
        recorder = active_recorder()
        dropout = self.training and self.attn_drop.p > 0
        if recorder is None and not dropout and not weights_observed(self.attn_drop, x):
            # Attention is linear in A: mix the two heads' outputs instead of materialising A.
            content_out = F.scaled_dot_product_attention(q, k, v)
            out = torch.lerp(content_out, _positional_mix(positional, v), gate)
        else:
            content = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
            attention = torch.lerp(content, positional, gate)  # (B, H, N, N)
            if recorder is not None:
                recorder.save(self, "queries", q)
                recorder.save(self, "keys", k)
                recorder.save(self, "content", content)
                recorder.save(self, "positional", positional)
                recorder.save(self, "attention", attention)
            out = self.attn_drop(attention) @ v
        x = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class MHSA(timm_convit.MHSA):
    """ConViT's plain multi-head self-attention (the blocks after the class token joins).

    Input and output (B, N, D), N = 1 + patches. Captures `attention` (B, H, N, N), rows summing to 1.
    """

    _timm_forward = renamed(timm_convit.MHSA.forward, "_timm_forward")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._timm_forward(x)
        return self._forward(x)

    @torch.jit.unused
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        H = self.num_heads
        q, k, v = self.qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)  # (B, H, N, d)
        recorder = active_recorder()
        if recorder is None and not weights_observed(self.attn_drop, x):
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attention = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, N, N)
            if recorder is not None:
                recorder.save(self, "attention", attention)
            out = self.attn_drop(attention) @ v
        x = out.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


def instrument_convit(model: timm_convit.ConVit) -> timm_convit.ConVit:
    """Swap the attention of every block of a timm `ConVit` for the capturing versions, in place.

    Raises ValueError, leaving the model as it was, for an attention type it does not know.
    """
    capturing = {timm_convit.GPSA: GPSA, timm_convit.MHSA: MHSA}
    for i, block in enumerate(model.blocks):
        if type(block.attn) not in capturing and not isinstance(block.attn, (GPSA, MHSA)):
            raise ValueError(f"cannot instrument attention of type {type(block.attn).__name__} (block {i})")
    for block in model.blocks:
        if type(block.attn) in capturing:
            block.attn = adopt(block.attn, capturing[type(block.attn)])
    return model
