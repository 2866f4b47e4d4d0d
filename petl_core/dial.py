"""The inductive-bias dial: run a ConViT with its gates σ(λ) set by hand, for one call, without changing the model.

>>> with set_gates(model, [None, [0.0] * 9, None, None]):   # block 1 content only; the others as trained
...     t = trace(model, images)

The override lives in a context variable (like the capture's recorder), so threads serving different users
through the same model each see their own dial, and the model's parameters are never touched.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .data import ImageSet

__all__ = ["PROBE_IMAGES", "gate_override", "parse_gates", "probe_accuracy", "probe_set", "set_gates"]

PROBE_IMAGES = 256
"""How many test images of its own task the dial scores a model on."""

PROBE_BATCH = 64
"""Images per forward pass when scoring the probe: on the CPU, batches of 64 of the shipped models run about 1.3×
faster than all 256 at once (their (B, H, N, N) attention stays nearer the caches; bench/dial.py)."""

_OVERRIDES: ContextVar[dict[int, torch.Tensor] | None] = ContextVar("petl_core_gates", default=None)


def gate_override(attention: nn.Module) -> torch.Tensor | None:
    """The σ (H,) set for this GPSA module in the current context, or None (use σ(λ))."""
    overrides = _OVERRIDES.get()
    return None if overrides is None else overrides.get(id(attention))


def _gpsa_modules(model: nn.Module) -> list[nn.Module]:
    return [block.attn for block in model.blocks if hasattr(block.attn, "gating_param")]


def parse_gates(value: object, model: nn.Module) -> list[list[float] | None]:
    """Check a dial setting against `model`: one entry per GPSA block, each None (as trained) or a list of one σ in
    [0, 1] per head. ValueError, in one sentence, for anything else."""
    modules = _gpsa_modules(model)
    if not modules:
        raise ValueError("this model has no GPSA blocks, so no gates to set")
    if value is None:
        return [None] * len(modules)
    if not isinstance(value, list) or len(value) != len(modules):
        raise ValueError(f"gates must be a list of {len(modules)} entries, one per GPSA block (each null or a list "
                         f"of {modules[0].num_heads} values in [0, 1])")
    parsed = []
    for block, (entry, module) in enumerate(zip(value, modules, strict=True)):
        if entry is None:
            parsed.append(None)
            continue
        ok = isinstance(entry, list) and len(entry) == module.num_heads and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1
            for v in entry)
        if not ok:
            raise ValueError(f"gates of GPSA block {block} must be null or {module.num_heads} numbers in [0, 1]")
        parsed.append([float(v) for v in entry])
    return parsed


@contextmanager
def set_gates(model: nn.Module, gates: Sequence[Sequence[float] | None]) -> Iterator[list[torch.Tensor]]:
    """Within the block, GPSA block i of `model` mixes with σ = gates[i] (H,) instead of σ(λ), in this context
    only (None: as trained). Yields the gates as applied, (H,) per GPSA block. Check `gates` with `parse_gates`."""
    modules = _gpsa_modules(model)
    if len(gates) != len(modules):
        raise ValueError(f"{len(gates)} gate settings for {len(modules)} GPSA blocks")
    applied, overrides = [], dict(_OVERRIDES.get() or {})
    for module, entry in zip(modules, gates, strict=True):
        trained = torch.sigmoid(module.gating_param.detach())
        value = trained if entry is None else torch.tensor(entry, dtype=trained.dtype, device=trained.device)
        overrides[id(module)] = value
        applied.append(value)
    token = _OVERRIDES.set(overrides)
    try:
        yield applied
    finally:
        _OVERRIDES.reset(token)


def probe_set(data: str, count: int = PROBE_IMAGES) -> ImageSet:
    """The first `count` test images of the dataset `data` (fixed: the same for every call and every dial)."""
    from .data import load_test_set

    test = load_test_set(data)
    return test.subset(torch.arange(min(count, len(test))))


def probe_accuracy(model: nn.Module, probe: ImageSet, preprocessing: dict) -> float:
    """Top-1 accuracy of `model` on `probe`, prepared as the model's card says (`preprocessing`: mean, std,
    base_size, pad), under whatever dial is set in this context."""
    from .diagnostics import evaluate  # (diagnostics traces models, and tracing reads the dial: import late)

    device = next(model.parameters()).device
    return evaluate(model, probe, (float(preprocessing["mean"]), float(preprocessing["std"])), device,
                    batch=PROBE_BATCH, base_size=preprocessing["base_size"], pad=preprocessing["pad"])
