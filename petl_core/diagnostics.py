"""What a training run measures of its model at every evaluation point: top-1 accuracy (`evaluate`), the training
dynamics (`dynamics`: nonlocality per layer and head, and ConViT's gates and positional centres and strengths), and
at its first and last step the gate-gradient diagnostic (`gate_gradients`: how hard the loss pushes each GPSA gate).
`TrainingCurves.of(history)` (petl_core.curves, torch-free; here too) reads the dynamics back from a run's
history.json as arrays (the app and the report draw them).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import metrics
from .curves import TrainingCurves
from .data import ImageSet
from .models import GPSA
from .preprocess import BASE_SIZE, PAD, prepare
from .probe import trace

__all__ = ["TrainingCurves", "dynamics", "evaluate", "gate_gradients", "gpsa_gates", "predict"]


def gpsa_gates(model: nn.Module) -> list[nn.Parameter]:
    """The gate parameters λ (H,) of the model's GPSA blocks, in block order (empty for a ViT)."""
    return [b.attn.gating_param for b in model.blocks if isinstance(b.attn, GPSA)]


@torch.no_grad()
def predict(model: nn.Module, images: ImageSet, norm: tuple[float, float], device: torch.device,
            batch: int, base_size: int = BASE_SIZE, pad: int = PAD) -> torch.Tensor:
    """(N,) int64 on the CPU: the top-1 class of each image, seen at base_size + 2·pad (`prepare`)."""
    model.eval()
    in_chans = model.patch_embed.proj.in_channels
    predictions = []
    for start in range(0, len(images), batch):
        x = prepare(images.images[start:start + batch], in_chans, *norm, train=False, base_size=base_size,
                    pad=pad).to(device)
        predictions.append(model(x).argmax(-1).cpu())
    return torch.cat(predictions)


def evaluate(model: nn.Module, test: ImageSet, norm: tuple[float, float], device: torch.device,
             batch: int, base_size: int = BASE_SIZE, pad: int = PAD) -> float:
    """Top-1 accuracy on the whole test set, seen at base_size + 2·pad (`prepare`)."""
    return (predict(model, test, norm, device, batch, base_size, pad) == test.labels).sum().item() / len(test)


def gate_gradients(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   label_smoothing: float) -> dict:
    """The gate-gradient diagnostic: mean and spread over batches of ∂L/∂λ, the training loss's gradient for
    each GPSA gate parameter, as training sees it (train mode: drop path on).

    Nothing of the run changes: the gradients are taken with `torch.autograd.grad` (no `.grad` is written, no
    step is taken) and the random state that drop path consumes is restored afterwards.

    Args:
        batches: (x (B, C, S, S) prepared inputs, y (B,) labels) pairs, on the model's device.

    Returns:
        {"mean": blocks × heads, "std": blocks × heads (sample std, ddof=1; None for one batch), "batches": n}.
    """
    gates = gpsa_gates(model)
    device = gates[0].device
    grads = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, label_smoothing=label_smoothing)
            grads.append(torch.stack(torch.autograd.grad(loss, gates)).cpu())  # (blocks, H)
    g = torch.stack(grads).double()  # (batches, blocks, H)
    return {"mean": g.mean(0).tolist(), "std": g.std(0).tolist() if len(g) > 1 else None, "batches": len(g)}


def dynamics(model: nn.Module, probe: torch.Tensor, batch: int) -> dict:
    """Gates, positional centres/strengths and nonlocality (per layer and head, mean over the probe images).

    Args:
        probe: (N, C, S, S) prepared images on the model's device, traced `batch` at a time.

    Returns:
        {"nonlocality": layers × heads, and for ConViT "gates": GPSA blocks × heads (σ(λ)), "centres":
        blocks × heads × 2 (dx, dy in patches), "strengths": blocks × heads}.
    """
    model.eval()
    sums: list[torch.Tensor] | None = None
    for start in range(0, len(probe), batch):
        t = trace(model, probe[start:start + batch])
        values = [metrics.nonlocality(a, t.grid, p).sum(0).cpu() for a, p in zip(t.attention, t.num_prefix,
                                                                                    strict=True)]
        sums = values if sums is None else [s + v for s, v in zip(sums, values, strict=True)]
    record = {"nonlocality": [(s / len(probe)).tolist() for s in sums]}
    heads = metrics.gpsa_heads(model)
    if heads:
        record["gates"] = [h.gates.cpu().tolist() for h in heads]
        record["centres"] = [h.centres.cpu().tolist() for h in heads]
        record["strengths"] = [h.strengths.cpu().tolist() for h in heads]
    return record
