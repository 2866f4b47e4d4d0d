"""Capture points: where instrumented modules hand tensors to an active trace.

A trace installs a `Recorder` in a `contextvars.ContextVar` for the duration of one forward pass. Modules ask
`active_recorder()` once at the top of their forward: when it is None (the normal case) they take their fast
path and record nothing. Because the recorder lives in the caller's context rather than on the modules, two
threads can trace the same model at once and each gets only its own tensors.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import nn

__all__ = ["Recorder", "active_recorder", "recording", "weights_observed"]


class Recorder:
    """Tensors captured during one forward pass, keyed by (module, name)."""

    def __init__(self) -> None:
        self._store: dict[tuple[int, str], torch.Tensor] = {}

    def save(self, module: nn.Module, name: str, tensor: torch.Tensor) -> None:
        """Keep `tensor` (detached, not copied) as `name` of `module`."""
        self._store[(id(module), name)] = tensor.detach()

    def get(self, module: nn.Module, name: str) -> torch.Tensor | None:
        """The tensor `module` saved as `name`, or None if it saved none."""
        return self._store.get((id(module), name))


_ACTIVE: ContextVar[Recorder | None] = ContextVar("petl_core_recorder", default=None)


def active_recorder() -> Recorder | None:
    """The recorder of the trace running in this context, or None outside a trace."""
    return _ACTIVE.get()


@contextmanager
def recording() -> Iterator[Recorder]:
    """Make a fresh recorder active in the current context until the block exits."""
    recorder = Recorder()
    token = _ACTIVE.set(recorder)
    try:
        yield recorder
    finally:
        _ACTIVE.reset(token)


def weights_observed(attn_drop: nn.Module, x: object) -> bool:
    """Whether timm's own tools watch this call's attention weights: a hook on the module's `attn_drop`
    (timm's `AttentionExtract(method="hook")`) or an FX trace, whose graph must hold the softmax
    (`method="fx"`). Modules with a fused fast path then materialise the weights, as timm's modules do."""
    return isinstance(x, torch.fx.Proxy) or bool(attn_drop._forward_hooks or attn_drop._forward_pre_hooks)
