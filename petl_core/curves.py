"""A training run's curves, read back from its history.json as arrays (the app and the report draw them), and where
the gate curves start: torch-free, so a page that draws them need not wait for torch.

>>> curves = TrainingCurves.of(zoo.read_history("convit_scenes"))
>>> curves.gates[0]    # (GPSA blocks, H): GATE_AT_INIT everywhere at step 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GATE_AT_INIT", "TrainingCurves"]

GATE_AT_INIT = 1 / (1 + math.exp(-1))
"""σ(1) ≈ 0.731: the gate σ(λ) of every GPSA head at initialisation (timm's GPSA starts each λ at 1)."""


@dataclass(frozen=True)
class TrainingCurves:
    """The dynamics of one run over its T evaluation points, from its history."""

    steps: np.ndarray
    """(T,) optimisation steps."""
    epochs: np.ndarray
    """(T,) epochs (steps over steps per epoch)."""
    nonlocality: np.ndarray
    """(T, layers): nonlocality per layer, mean over heads and the probe images, in patches."""
    gates: np.ndarray | None
    """(T, GPSA blocks, H): σ(λ) per block and head; None for a model without GPSA."""

    @classmethod
    def of(cls, history: dict) -> TrainingCurves:
        entries = history["entries"]
        gates = [e.get("gates") for e in entries]
        return cls(steps=np.array([e["step"] for e in entries]), epochs=np.array([e["epoch"] for e in entries]),
                   nonlocality=np.array([[np.mean(layer) for layer in e["nonlocality"]] for e in entries]),
                   gates=np.array(gates) if all(gates) else None)
