"""The papers' findings measured here: results of `experiments.make_assets`, grouped, next to the published numbers.

Shared by `experiments.report` (Markdown and PNG) and the app (interactive plots), so both show the same numbers.
Accuracies are in percent; `runs` lists hold one value per seed.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

__all__ = [
    "DECIDING_BUDGETS",
    "PAPER_CONVPASS_VTAB",
    "PAPER_SAMPLE_EFFICIENCY",
    "RESULTS",
    "SHIPPED_BUDGETS",
    "budgets",
    "budgets_with",
    "load_results",
    "petl_summary",
    "sample_efficiency_summary",
]

RESULTS = Path(__file__).resolve().parents[1] / "assets" / "results"
"""One folder per training budget, each with sample_efficiency.json, petl.json, timings.json (and suite.json)."""
SHIPPED_BUDGETS = ("scenes", "2h")
"""The budgets whose models ship (those of the app's default model first): what `experiments.make_assets` trains by
default."""
DECIDING_BUDGETS = {"sample_efficiency": "scenes_sample", "petl": "scenes"}
"""Per finding, the budget whose runs decide it (docs/findings.md says why): the one the app opens on."""

PAPER_SAMPLE_EFFICIENCY = {0.05: (34.8, 47.8), 0.1: (48.0, 59.6), 0.3: (66.1, 73.7), 0.5: (74.6, 78.2),
                           1.0: (79.9, 81.4)}
"""ConViT Table 2 (methods.md §1.7): fraction of ImageNet -> (DeiT-S, ConViT-S) top-1 %."""

PAPER_CONVPASS_VTAB = {"finetune": (85.8, 68.9), "linear": (0.0, 57.6), "convpass_attn": (0.16, 75.8),
                       "convpass": (0.33, 76.6)}
"""Convpass Table 1 (methods.md §2.4), VTAB-1K on ViT-B/16: method -> (trainable params in millions, average %)."""


def budgets(root: str | Path | None = None) -> list[str]:
    """The budgets with results under `root` (default assets/results), the shipped ones first."""
    found = sorted(p.name for p in Path(root or RESULTS).glob("*") if p.is_dir() and any(p.glob("*.json")))
    order = {name: i for i, name in enumerate(SHIPPED_BUDGETS)}
    return sorted(found, key=lambda name: order.get(name, len(order)))


def budgets_with(name: str, root: str | Path | None = None) -> list[str]:
    """The budgets that have `name` results (a finding: "sample_efficiency" or "petl"): the one that decides it
    (`DECIDING_BUDGETS`) first, then in `budgets` order."""
    found = [b for b in budgets(root) if load_results(name, b, root) is not None]
    return sorted(found, key=lambda b: b != DECIDING_BUDGETS.get(name))


def load_results(name: str, budget: str = SHIPPED_BUDGETS[0], root: str | Path | None = None) -> dict | None:
    """`<root>/<budget>/<name>.json` (root: assets/results), or None when that stage has not run."""
    path = Path(root or RESULTS) / budget / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _stats(values: list[float]) -> dict:
    return {"runs": values, "mean": float(np.mean(values)) if values else None,
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}  # sample sd: seeds are a sample


def sample_efficiency_summary(results: dict) -> list[dict]:
    """One row per fraction: DeiT and ConViT accuracies (mean, sd, runs), the relative gap, and the paper's."""
    by = defaultdict(list)
    for row in results["runs"]:
        by[(row["method"], row["fraction"])].append(100 * row["test_accuracy"])
    rows = []
    for fraction in sorted({f for _, f in by}):
        deit, convit = _stats(by[("deit", fraction)]), _stats(by[("convit", fraction)])
        gap = (100 * (convit["mean"] - deit["mean"]) / deit["mean"]
               if deit["mean"] is not None and convit["mean"] is not None else None)
        paper = PAPER_SAMPLE_EFFICIENCY.get(fraction)
        rows.append({"fraction": fraction, "deit": deit, "convit": convit, "relative_gap": gap,
                     "paper": None if paper is None else {"deit": paper[0], "convit": paper[1],
                                                          "relative_gap": 100 * (paper[1] - paper[0]) / paper[0]}})
    return rows


def petl_summary(results: dict) -> dict:
    """Methods (fewest trainable parameters first; a method on another backbone than the first row's as
    "<method> on <backbone>"), shots, and last-epoch accuracy per (method, shots) of the chosen rows.

    Returns:
        {"methods": [...], "shots": [1, 2, ...] (empty when no few-shot runs were made), "parameters": {method:
         trainable}, "full_images": training images of the whole split (a method's validation images included),
         "accuracy": {method: {"full" | "<k>": stats}}} where "full" is that whole split.
    """
    by = defaultdict(list)
    parameters, full_images = {}, set()
    adapted = next((row["backbone"] for row in results["runs"] if row.get("backbone")), None)  # the DeiT's come first
    for row in results["runs"]:
        if not row.get("chosen", True):  # a learning rate the validation split did not choose, or a refit
            continue
        # a method on another backbone (full fine-tuning of the ConViT) is a row of its own
        method = row["method"] if row.get("backbone", adapted) == adapted else f"{row['method']} on {row['backbone']}"
        by[(method, row["shots"])].append(100 * row["last_epoch_accuracy"])
        parameters[method] = row["trainable_parameters"]
        if row["shots"] is None:
            full_images.add(row["train_images"] + row.get("val_images", 0))
    methods = sorted(parameters, key=parameters.get)
    shots = sorted({s for _, s in by if s is not None})
    accuracy = {m: {("full" if s is None else str(s)): _stats(by[(m, s)]) for s in [None, *shots]} for m in methods}
    return {"methods": methods, "shots": shots, "parameters": parameters,
            "full_images": max(full_images) if full_images else None, "accuracy": accuracy}
