"""How long does one turn of the inductive-bias dial take? A benchmark, not a test.

One dial change (what /dial computes, without HTTP and drawing) is: the gates set for the call
(`petl_core.dial.set_gates`), the user's image traced (`analyze`: attention of every block kept) and the
accuracy on the probe set (`probe_accuracy`, the first 256 test images of the model's task). Side by side in one
run, for every shipped ConViT: the dial change against the reference, timm's own forward (the same model class,
`torch.no_grad`, no dial, nothing captured) over the same 256 probe images plus the one image. "× timm" is the
median dial time over the median reference time. The issue's target is 0.5 s of server time per change.

    .venv/bin/python bench/dial.py [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import timm
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core import zoo  # noqa: E402
from petl_core.analysis import analyze  # noqa: E402
from petl_core.dial import parse_gates, probe_accuracy, probe_set, set_gates  # noqa: E402
from petl_core.preprocess import prepare  # noqa: E402


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up (caches, allocator)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _measure(name: str, card: zoo.ModelCard, reps: int) -> tuple[float, float, int]:
    """(dial change ms, timm forward ms, probe images) for the shipped ConViT `name`."""
    loaded = zoo.load(name)
    probe, pre = probe_set(card.recipe["data"]), card.preprocessing
    batch = prepare(probe.images, 1, pre["mean"], pre["std"], train=False, base_size=pre["base_size"], pad=pre["pad"])
    image = batch[:1]
    heads = loaded.model.blocks[0].attn.num_heads
    gpsa = sum(hasattr(b.attn, "gating_param") for b in loaded.model.blocks)
    settings = [parse_gates([[v] * heads] * gpsa, loaded.model) for v in (0.0, 0.5, 1.0)]
    turns = iter(range(10**9))

    def change() -> None:
        with set_gates(loaded.model, settings[next(turns) % 3]):
            analyze(loaded.model, image)
            probe_accuracy(loaded.model, probe, pre)

    # timm's own class with the same weights: no dial, nothing captured
    reference = timm.create_model(card.architecture["timm_name"], **card.architecture["kwargs"]).eval()
    reference.load_state_dict(loaded.model.state_dict())

    def timm_forward() -> None:
        with torch.no_grad():
            reference(batch)
            reference(image)

    return _median_ms(change, reps), _median_ms(timm_forward, reps), len(probe)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps} changes\n")
    print("| model | dial change ms | timm forward ms | × timm |\n|---|---:|---:|---:|")
    for name in zoo.SHIPPED:
        card = zoo.ModelCard.load(zoo.ASSETS / name)
        if card.method == "convit":
            dial_ms, timm_ms, images = _measure(name, card, args.reps)
            print(f"| {name} ({images} probe images) | {dial_ms:.0f} | {timm_ms:.0f} | {dial_ms / timm_ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
