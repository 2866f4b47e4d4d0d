"""How fast does a shipped model load? A benchmark, not a test.

Side by side in one run, for every shipped model: `zoo.load` (the model built on the meta device, so nothing is
randomly initialised, then the file's weights assigned) against the ordinary way to the same model: timm builds it
on the CPU with its random initialisation, then `load_state_dict` copies the same weights in (already in memory,
so the ordinary way reads no file). "× ordinary" is the
median of zoo.load over the median of the ordinary way (below 1: zoo.load is faster).

    .venv/bin/python bench/model_load.py [--reps 5]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core import zoo  # noqa: E402
from petl_core.building import construct  # noqa: E402


def _ordinary(name: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    model = construct(zoo.ModelCard.load(zoo.ASSETS / name))  # timm's random init, on the CPU
    model.load_state_dict(state)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps} loads\n")
    print("| model | zoo.load ms | ordinary ms | × ordinary |\n|---|---:|---:|---:|")
    for name in zoo.SHIPPED:
        state = zoo.load(name).model.state_dict()  # warm-up, and the weights the ordinary way copies in
        timings: dict[str, list[float]] = {"zoo": [], "ordinary": []}
        for rep in range(args.reps):
            for way in (("zoo", "ordinary") if rep % 2 == 0 else ("ordinary", "zoo")):
                start = time.perf_counter()
                zoo.load(name) if way == "zoo" else _ordinary(name, state)
                timings[way].append(time.perf_counter() - start)
        ours, theirs = (statistics.median(timings[k]) for k in ("zoo", "ordinary"))
        print(f"| {name} | {1000 * ours:.0f} | {1000 * theirs:.0f} | {ours / theirs:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
