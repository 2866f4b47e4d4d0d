"""One image through one model: the trace plus the numbers the explorer reports (shared by CLI and app)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import metrics
from .probe import Trace, trace

__all__ = ["Analysis", "analyze", "class_names"]


def class_names(model: nn.Module) -> list[str]:
    """Readable class names: the model's `label_names` when it has them, ImageNet's for 1000 classes."""
    names = getattr(model, "label_names", None)
    if names is None and model.num_classes == 1000:
        from timm.data import ImageNetInfo
        info = ImageNetInfo()
        names = [info.index_to_description(i) for i in range(1000)]
    return list(names) if names is not None else [f"class {i}" for i in range(model.num_classes)]


@dataclass
class Analysis:
    """The analysis of a batch of images (B images; summaries are for image `index` of the batch)."""

    trace: Trace
    top5: list[dict]
    """For each image: the top-5 classes as {index, label, probability}."""
    nonlocality: list[torch.Tensor]
    """Per block: (B, H) attention-weighted query-key distance over patches, in patches."""
    patch_size: tuple[int, int]
    init_nonlocality: list[torch.Tensor] | None = None
    """Per block: (B, H) nonlocality of the same architecture at initialisation on the same images (the reference a
    trained head moved from), when `analyze` was given the initial model."""

    def non_finite(self) -> list[str]:
        """What the model computed that is not finite (NaN or infinite): finite weights can still overflow."""
        t = self.trace
        outputs = {"logits": [t.logits], "attention": t.attention,
                   "bypass outputs": [c.output for entry in t.bypass if entry for c in entry.values()]}
        return [name for name, values in outputs.items() if not all(torch.isfinite(v).all() for v in values)]

    def summary(self, index: int = 0) -> dict:
        """JSON-ready numbers for image `index`: top-5, gates, nonlocality per layer and head, bypass shares."""
        t = self.trace
        per_head = [values[index].tolist() for values in self.nonlocality]
        summary = {
            "grid": list(t.grid),
            "patch_size": list(self.patch_size),
            "top5": self.top5[index],
            "gates": {
                "blocks": t.gated_blocks,
                "sigma_lambda": t.gate_matrix.tolist(),
            },
            "nonlocality": {
                "unit": "patches",
                "per_head": per_head,
                "per_layer": [sum(v) / len(v) for v in per_head],
            },
            **({"init_nonlocality_per_head": [values[index].tolist() for values in self.init_nonlocality]}
               if self.init_nonlocality is not None else {}),
            "num_prefix": t.num_prefix,
        }
        bypass = {}
        for i, entry in enumerate(t.bypass):
            if entry is None:
                continue
            maps = metrics.bypass_maps(entry, t.grid, t.num_prefix[i])
            bypass[str(i)] = {f"{branch}_{name}": getattr(m, name)[index].mean().item()
                              for branch, m in maps.items() for name in ("norm", "ratio")}
        if bypass:
            summary["bypass_mean_per_block"] = bypass
        return summary


def analyze(model: nn.Module, images: torch.Tensor, initial: nn.Module | None = None) -> Analysis:
    """Trace `images` (B, C, height, width) through `model` and measure what the explorer shows; with `initial` (the
    architecture at initialisation, e.g. `building.initial_model`), its nonlocality on the same images too."""
    t = trace(model, images)
    probabilities = t.logits.float().softmax(dim=-1)
    top = probabilities.topk(min(5, probabilities.shape[-1]), dim=-1)
    names = class_names(model)
    top5 = [
        [{"index": int(i), "label": names[int(i)], "probability": float(p)} for p, i in zip(ps, idx, strict=True)]
        for ps, idx in zip(top.values, top.indices, strict=True)
    ]
    nonlocality = [metrics.nonlocality(a, t.grid, p).cpu() for a, p in zip(t.attention, t.num_prefix, strict=True)]
    patch_size = tuple(int(s) for s in model.patch_embed.patch_size)
    init = analyze(initial, images).nonlocality if initial is not None else None
    return Analysis(trace=t, top5=top5, nonlocality=nonlocality, patch_size=patch_size, init_nonlocality=init)
