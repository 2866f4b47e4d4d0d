"""The inductive-bias dial: run a ConViT with its gates σ(λ) set by hand, for one call, without changing the model.

>>> with set_gates(model, [None, [0.0] * 9, None, None]):   # block 1 content only; the others as trained
...     t = trace(model, images)

The override lives in a context variable (like the capture's recorder), so threads serving different users
through the same model each see their own dial, and the model's parameters are never touched.
"""
from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
from torch import nn

from .catalog import PROBE_IMAGES

if TYPE_CHECKING:
    from .data import ImageSet

__all__ = ["MAX_GATES_TEXT", "PROBE_IMAGES", "DialProbe", "gate_override", "gpsa_blocks", "parse_gates",
           "probe_accuracy", "probe_set", "read_gates", "set_gates"]


MAX_GATES_TEXT = 20_000
"""Longest dial setting read as JSON text, in characters (ConViT-S's 10 blocks × 9 heads take about 700)."""

PROBE_BATCH = 64
"""Images per forward pass when scoring the probe: on the CPU, batches of 64 of the shipped models run about 1.3×
faster than all 256 at once (their (B, H, N, N) attention stays nearer the caches; bench/dial.py)."""

_OVERRIDES: ContextVar[dict[int, torch.Tensor] | None] = ContextVar("petl_core_gates", default=None)


def gate_override(attention: nn.Module) -> torch.Tensor | None:
    """The σ (H,) set for this GPSA module in the current context, or None (use σ(λ))."""
    overrides = _OVERRIDES.get()
    return None if overrides is None else overrides.get(id(attention))


def gpsa_blocks(model: nn.Module) -> list[int]:
    """The indices of `model`'s GPSA blocks (those whose attention has gates), in order: the dial's entries."""
    return [i for i, block in enumerate(model.blocks) if hasattr(block.attn, "gating_param")]


def _gpsa_modules(model: nn.Module) -> list[nn.Module]:
    return [model.blocks[i].attn for i in gpsa_blocks(model)]


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


def read_gates(text: str | None, model: nn.Module) -> list[list[float] | None]:
    """`parse_gates` of a setting given as JSON text (empty or None: as trained). ValueError, in one sentence, for
    text that is too long or not JSON (a number too long to convert and nesting deeper than Python's stack
    included: json raises ValueError and RecursionError for those) or not a setting of `model`."""
    text = "" if text is None else str(text)
    if len(text) > MAX_GATES_TEXT:
        raise ValueError(f"the gates JSON is over {MAX_GATES_TEXT:,} characters: give one list of σ values per GPSA "
                         "block")
    try:
        value = json.loads(text) if text.strip() else None
    except (ValueError, RecursionError):
        raise ValueError("the gates are not valid JSON: give one list of σ values per GPSA block, or null") from None
    return parse_gates(value, model)


@contextmanager
def set_gates(model: nn.Module, gates: Sequence[Sequence[float] | None]) -> Iterator[list[torch.Tensor]]:
    """Within the block, GPSA block i of `model` mixes with σ = gates[i] (H,) instead of σ(λ), in this context
    only (None: as trained; a tensor is used as it is, so an exported graph takes it as an input: petl_core.export).
    Yields the gates as applied, (H,) per GPSA block. Check `gates` with `parse_gates`."""
    modules = _gpsa_modules(model)
    if len(gates) != len(modules):
        raise ValueError(f"{len(gates)} gate settings for {len(modules)} GPSA blocks")
    applied, overrides = [], dict(_OVERRIDES.get() or {})
    for module, entry in zip(modules, gates, strict=True):
        trained = torch.sigmoid(module.gating_param.detach())
        value = trained if entry is None else torch.as_tensor(entry, dtype=trained.dtype, device=trained.device)
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


class DialProbe:
    """A ConViT's probe accuracy under dial settings, re-running only what a change can reach.

    A setting that agrees with one scored before on GPSA blocks 0..k-1 leaves the residual stream entering block k
    as it was, so only blocks k onward run again: a change of the last GPSA block costs about half a pass, of the
    first the whole pass. The probe's inputs are prepared once, and for the last `kept` settings scored the stream
    entering each GPSA block (256 × N × D floats a block) is kept. The numbers are those of `probe_accuracy`, whose
    pass this is, split at the blocks (the same batches, the same operations).

    >>> probe = DialProbe(model, probe_set(data), card.preprocessing)
    >>> probe.accuracy([None, [0.0] * 9, None, None])   # blocks 1-5 run again; block 0's input is kept
    """

    def __init__(self, model: nn.Module, probe: ImageSet, preprocessing: dict, kept: int = 2) -> None:
        from .preprocess import prepare_as_card

        self.model, self.labels, self.kept = model, probe.labels, kept
        self._gpsa = gpsa_blocks(model)
        device = next(model.parameters()).device
        inputs = prepare_as_card(probe.images, model, preprocessing).to(device)
        with torch.no_grad():  # timm's ConVit.forward_features up to its blocks; the stream entering block 0
            self._entry = [self._embed(x) for x in inputs.split(PROBE_BATCH)]
        self._scored: list[tuple[list[tuple[float, ...]], list[list[torch.Tensor]], float]] = []
        self._lock = threading.Lock()  # one scoring at a time: they share the kept streams

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) images → (B, N, D) patch tokens entering block 0."""
        model = self.model
        x = model.patch_embed(x)
        if model.use_pos_embed:
            x = x + model.pos_embed
        return model.pos_drop(x)

    def accuracy(self, gates: Sequence[Sequence[float] | None], keep: bool = True) -> float:
        """Top-1 accuracy on the probe with GPSA block i mixing at σ = gates[i] (None: as trained), as
        `probe_accuracy` under `set_gates(model, gates)` gives it. Check `gates` with `parse_gates`. With `keep`
        False the setting's streams are not kept (scoring in the background leaves the user's kept settings)."""
        model = self.model
        with self._lock, set_gates(model, gates) as applied, torch.no_grad():
            key = [tuple(g.tolist()) for g in applied]
            shared, streams = 0, None  # the kept setting agreeing on the most leading GPSA blocks
            for kept_key, kept_streams, score in self._scored:
                agree = next((i for i, (a, b) in enumerate(zip(key, kept_key, strict=True)) if a != b), len(key))
                if agree == len(key):
                    return score
                if agree > shared:
                    shared, streams = agree, kept_streams
            start = self._gpsa[shared] if shared else 0
            new_streams, correct = [], 0
            for batch, entry in enumerate(self._entry):
                x = streams[batch][shared - 1] if shared else entry
                kept = list(streams[batch][:shared - 1]) if shared else []  # entering GPSA blocks 1..shared-1
                for u in range(start, len(model.blocks)):  # the rest of timm's ConVit.forward_features
                    if u in self._gpsa[1:]:
                        kept.append(x)
                    if u == model.local_up_to_layer and model.cls_token is not None:
                        x = torch.cat((model.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
                    x = model.blocks[u](x)
                logits = model.forward_head(model.norm(x))
                correct += (logits.argmax(-1).cpu() == self.labels[batch * PROBE_BATCH:][:len(x)]).sum().item()
                new_streams.append(kept)
            score = correct / len(self.labels)
            if keep:
                self._scored = [*self._scored, (key, new_streams, score)][-self.kept:]
            return score
