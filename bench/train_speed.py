"""How fast do the shipped architectures train, at the Fashion-MNIST and the scenes input sizes and at two widths?
A benchmark, not a test: the numbers that size a training budget.

For ConViT and DeiT (9 heads, depth 6) with 16 or 8 channels per head (the Fashion-MNIST pair and the scenes pair)
and 4-pixel patches (or any of `--patch-sizes`) at 32×32 (an 8×8 grid of 4-pixel patches) and 48×48 (12×12), it
times `--steps` training steps of `--batch` images exactly as `petl_core.train` makes them (the dataset's
augmentation, AdamW, label smoothing, drop path 0.1), after `--warmup` untimed steps, interleaving the configurations
per repetition. "× 32 px" is the time of a step at 48 px over the same model's at 32 px; "× 16 ch" that of 8 channels
per head over 16 at the same size and patches; "× 4 px" that of the row's patches over 4-pixel ones.

    .venv/bin/python bench/train_speed.py [--steps 10] [--warmup 3] [--batch 128] [--reps 3] [--threads N]
                                          [--head-dims 16 8] [--patch-sizes 4]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core.data import DATASETS  # noqa: E402
from petl_core.preprocess import prepare  # noqa: E402
from petl_core.registry import build_model  # noqa: E402
from petl_core.train import TrainConfig, _param_groups  # noqa: E402


def _setup(method: str, data: str, head_dim: int, patch_size: int, batch: int):
    """The model, optimiser and a batch source for one configuration (random uint8 images of the dataset's size)."""
    config = TrainConfig(method=method, data=data, batch=batch, head_dim=head_dim, patch_size=patch_size)
    spec = DATASETS[data]
    model = build_model(config, num_classes=10)
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    side = spec.base_size if data == "fashion_scenes" else 28
    images = torch.randint(0, 256, (batch, 1, side, side), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch,))

    def step(generator: torch.Generator) -> None:
        x = prepare(images, 1, 0.3, 0.3, train=True, generator=generator, augmentation=spec.augmentation,
                    base_size=spec.base_size, pad=spec.pad)
        model.train()
        loss = F.cross_entropy(model(x), labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--head-dims", type=int, nargs="+", default=[16, 8])
    parser.add_argument("--patch-sizes", type=int, nargs="+", default=[4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    configs = [(method, data, width, patch) for patch in args.patch_sizes for width in args.head_dims
               for method in ("convit", "deit") for data in ("fashion_mnist", "fashion_scenes")]
    steps = {key: _setup(*key, args.batch) for key in configs}
    generator = torch.Generator().manual_seed(0)
    for step in steps.values():
        for _ in range(args.warmup):
            step(generator)
    seconds = {key: [] for key in configs}
    for rep in range(args.reps):
        for key in configs[rep % len(configs):] + configs[:rep % len(configs)]:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[key](generator)
            seconds[key].append((time.perf_counter() - start) / args.steps)
    print(f"{args.threads} threads, batch {args.batch}, {args.steps} steps × {args.reps} repetitions, "
          f"torch {torch.__version__}\n")
    print("| model | channels per head | patch | input | grid | ms per step | images/s | × 32 px | × 16 ch | × 4 px |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    median = {key: statistics.median(values) for key, values in seconds.items()}

    def ratio(time_: float, key: tuple) -> str:
        return f"{time_ / median[key]:.2f}" if key in median else "–"

    for method, data, width, patch in configs:
        size, time_ = DATASETS[data].input_size, median[(method, data, width, patch)]
        grid = size // patch
        print(f"| {method} | {width} | {patch} | {size}×{size} | {grid}×{grid} | {1000 * time_:.0f} | "
              f"{args.batch / time_:.0f} | {ratio(time_, (method, 'fashion_mnist', width, patch))} | "
              f"{ratio(time_, (method, data, 16, patch))} | {ratio(time_, (method, data, width, 4))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
