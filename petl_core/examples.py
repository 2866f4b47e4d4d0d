"""Examples that fit a model trained here: test images of its own task with their true labels, the first few it gets
right and the first one or two it gets wrong.

The images ship, as the dataset stores them (28×28, 8×8 or 48×48 grayscale PNGs), under `<root>/<task>/` with an
`examples.json` naming each file's true class; `python scripts/make_examples.py` writes them from the probe set of
each task (`dial.probe_set`): for every shipped model of the task, its first CORRECT right and first WRONG wrong
answers, in the probe's order. `task_examples` then runs a model on those files the way the app runs any upload
(`inputs.model_input`) and picks the same way, so each caption's verdict is the model's answer now, and no dataset
is needed to show them.

>>> [(e.path.name, e.label, e.prediction) for e in task_examples(zoo.load("convit_fmnist"), EXAMPLES)]
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .building import Loaded
from .images import load_image
from .inputs import model_input

__all__ = ["CORRECT", "MANIFEST", "WRONG", "Example", "pick", "task_examples", "write_task_examples"]

CORRECT, WRONG = 4, 2
"""How many examples a model gets right, then wrong, that its gallery shows."""
MANIFEST = "examples.json"
"""{"data": task, "images": [{"file", "index" (in the test set), "label" (class name)}, ...]} in each task folder."""
_TASK = re.compile(r"[a-z0-9_]{1,40}")  # a registered dataset's name, never a path


@dataclass(frozen=True)
class Example:
    """One test image of a model's own task."""

    path: Path
    label: str
    """Its true class."""
    prediction: str
    """The model's top-1 class for it."""

    @property
    def correct(self) -> bool:
        return self.label == self.prediction


def pick(labels: Sequence[int], predictions: Sequence[int], correct: int = CORRECT, wrong: int = WRONG) -> list[int]:
    """Positions of the first `correct` images answered right, then of the first `wrong` answered wrong."""
    right = [i for i, (y, p) in enumerate(zip(labels, predictions, strict=True)) if y == p]
    missed = [i for i, (y, p) in enumerate(zip(labels, predictions, strict=True)) if y != p]
    return right[:correct] + missed[:wrong]


def write_task_examples(data: str, models: Sequence[Loaded], root: Path) -> list[Path]:
    """Write into `<root>/<data>/` the probe images (`dial.probe_set(data)`) that `pick` chooses for any of `models`
    (all trained on `data`), as PNGs, and their manifest (replacing what was there). Returns the image paths."""
    from .diagnostics import predict  # (imports the tracing machinery: only the writer needs it)
    from .dial import PROBE_BATCH, probe_set

    probe = probe_set(data)
    labels = probe.labels.tolist()
    chosen: set[int] = set()
    for loaded in models:
        pre = loaded.card.preprocessing
        device = next(loaded.model.parameters()).device
        predictions = predict(loaded.model, probe, (float(pre["mean"]), float(pre["std"])), device, PROBE_BATCH,
                              pre["base_size"], pre["pad"])
        chosen.update(pick(labels, predictions.tolist()))
    folder = root / data
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):
        stale.unlink()
    images, paths = [], []
    for index in sorted(chosen):
        paths.append(folder / f"test_{index:04d}.png")
        Image.fromarray(probe.images[index, 0].numpy(), "L").save(paths[-1], optimize=True)
        images.append({"file": paths[-1].name, "index": index, "label": probe.classes[labels[index]]})
    (folder / MANIFEST).write_text(json.dumps({"data": data, "images": images}, indent=1) + "\n")
    return paths


@torch.no_grad()
def task_examples(loaded: Loaded, root: Path) -> list[Example] | None:
    """The examples of `loaded`'s own task under `root`: the first CORRECT it gets right, then the first WRONG it
    gets wrong (fewer where the shipped set has fewer). None when its task has no examples there (hub models, tasks
    without a folder) or their labels are not its classes."""
    data = (loaded.card.recipe or {}).get("data")
    if not isinstance(data, str) or not _TASK.fullmatch(data) or not (root / data / MANIFEST).is_file():
        return None
    entries = json.loads((root / data / MANIFEST).read_text())["images"]
    classes = loaded.card.classes
    if not entries or any(e["label"] not in classes for e in entries):
        return None
    paths = [root / data / e["file"] for e in entries]
    inputs = torch.stack([model_input(loaded, load_image(path))[0] for path in paths])  # (B, C, H, W)
    device = next(loaded.model.parameters()).device
    predictions = loaded.model(inputs.to(device)).argmax(-1).cpu().tolist()
    labels = [classes.index(e["label"]) for e in entries]
    return [Example(paths[i], classes[labels[i]], classes[predictions[i]]) for i in pick(labels, predictions)]
