"""Regenerate everything in assets/ from scratch: the shipped models and the papers' findings measured here.

    python -m experiments.make_assets                 # everything, resuming finished or interrupted runs
    python -m experiments.make_assets --stage shipped --jobs 2
    python -m experiments.make_assets --stage petl --seeds 0      # one seed first when time is short

Stages (each run lives in runs/<stage>/<name>/ with checkpoints; a finished run is skipped, an interrupted one
resumes, so the command can be repeated until it is done):

1. shipped      ConViT and DeiT of equal size on all of Fashion-MNIST, then Convpass on the digits task on top of
                the DeiT backbone; copied to assets/models/ with their cards and histories.
2. sample       ConViT vs DeiT on 5/10/30/100% of Fashion-MNIST with the same number of steps for every fraction
                (ConViT Table 2's protocol), SEEDS seeds.
3. petl         Convpass, Convpass-attn, linear probe and full fine-tuning of the Fashion-MNIST DeiT on digits,
                at 1,000 images and at 1/2/4/8/16 shots, last-epoch accuracy.

Every run's wall time, device and processes go to assets/results/timings.json; results to assets/results/*.json.
Runs are spread over `--jobs` worker processes with the machine's threads divided between them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from petl_core import zoo
from petl_core.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

RUNS = ROOT / "runs"
ASSETS = ROOT / "assets"
RESULTS = ASSETS / "results"

SHIPPED_EPOCHS = 6
SAMPLE_FRACTIONS = (0.05, 0.1, 0.3, 1.0)
SAMPLE_STEPS = 600
SEEDS = (0, 1)
PETL_METHODS = ("convpass", "convpass_attn", "linear", "finetune")
PETL_SHOTS = (1, 2, 4, 8, 16, None)  # None: the 1,000-image split (last: the longest runs)
PETL_EPOCHS = 100  # Convpass's VTAB-1K and few-shot recipe (methods.md §2.3)


def shipped_runs() -> list[TrainConfig]:
    return [TrainConfig(method=m, data="fashion_mnist", epochs=SHIPPED_EPOCHS, batch=128, lr=1e-3, seed=0,
                           eval_points=18, out=str(RUNS / "shipped" / m)) for m in ("convit", "deit")]


def convpass_shipped_run() -> TrainConfig:
    return TrainConfig(method="convpass", data="digits", backbone=str(RUNS / "shipped" / "deit" / "model.safetensors"),
                       epochs=PETL_EPOCHS, batch=64, lr=1e-3, seed=0, eval_points=12,
                       out=str(RUNS / "shipped" / "convpass"))


def sample_runs() -> list[TrainConfig]:
    return [TrainConfig(method=m, data="fashion_mnist", fraction=f, steps=SAMPLE_STEPS, batch=128, lr=1e-3, seed=s,
                        eval_points=6, out=str(RUNS / "sample" / f"{m}_f{f}_s{s}"))
            for s in SEEDS for f in SAMPLE_FRACTIONS for m in ("convit", "deit")]


def petl_runs() -> list[TrainConfig]:
    backbone = str(RUNS / "shipped" / "deit" / "model.safetensors")
    runs = []
    for s in SEEDS:
        for shots in PETL_SHOTS:
            for m in PETL_METHODS:
                name = f"{m}_{'full' if shots is None else f'{shots}shot'}_s{s}"
                runs.append(TrainConfig(method=m, data="digits", backbone=backbone, shots=shots, epochs=PETL_EPOCHS,
                                        batch=64, lr=1e-3 if shots is None else 5e-3, seed=s, eval_points=4,
                                        out=str(RUNS / "petl" / name)))
    return runs


def _record(config: TrainConfig, history: dict) -> dict:
    """Where and how long one finished run took (from its history)."""
    last, env = history["entries"][-1], history["environment"]
    return {
        "stage": Path(config.out).parent.name, "run": Path(config.out).name, "method": config.method,
        "run_wall_time_s": round(last["wall_time"], 1), "steps": last["step"], "test_accuracy": last["test_accuracy"],
        "device": env["device"], "processes": env["processes"], "cpu_count": env["cpu_count"], "gpu": env["gpu"],
    }


def _run(config_dict: dict, threads: int) -> dict:
    """Worker: run one config to the end (resuming), return its timing record."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    from petl_core.runtime import retain_freed_memory
    from petl_core.train import train

    torch.set_num_threads(threads)
    retain_freed_memory()
    config = TrainConfig(**config_dict)
    return {**_record(config, train(config, progress=False)), "threads": threads}


def _finished(config: TrainConfig) -> bool:
    return (Path(config.out) / "model.safetensors").is_file()


def run_all(configs: list[TrainConfig], jobs: int, train: bool = True) -> list[dict]:
    """Run the unfinished `configs` (with `train` False, none) and return the records of all finished ones."""
    todo = [c for c in configs if not _finished(c)] if train else []
    records = [_record(c, _load_history(c)) for c in configs if _finished(c) and c not in todo]
    print(f"{len(configs)} runs: {len(records)} finished already, {len(todo)} to run on {jobs} workers", flush=True)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for record in pool.map(_run, [asdict(c) for c in todo], [threads] * len(todo)):
            print(f"  {record['stage']}/{record['run']}: accuracy {record['test_accuracy']:.4f}, "
                  f"{record['run_wall_time_s']:.0f} s", flush=True)
            records.append(record)
    return records


def _load_history(config: TrainConfig) -> dict:
    return json.loads((Path(config.out) / "history.json").read_text())


def summarise_sample() -> dict:
    rows = []
    for config in sample_runs():
        if (Path(config.out) / "model.safetensors").is_file():
            h = _load_history(config)
            rows.append({"method": config.method, "fraction": config.fraction, "seed": config.seed,
                         "train_images": h["data"]["train_images"], "steps": h["steps"],
                         "test_accuracy": h["entries"][-1]["test_accuracy"],
                         "curve": [[e["step"], e["test_accuracy"]] for e in h["entries"]]})
    return {"protocol": f"{SAMPLE_STEPS} steps of batch 128 for every fraction (ConViT Table 2 keeps the images "
                        "seen constant the same way)", "runs": rows}


def summarise_petl() -> dict:
    rows = []
    for config in petl_runs():
        if (Path(config.out) / "model.safetensors").is_file():
            h = _load_history(config)
            rows.append({"method": config.method, "shots": config.shots, "seed": config.seed,
                         "train_images": h["data"]["train_images"],
                         "trainable_parameters": h["parameters"]["trainable"],
                         "last_epoch_accuracy": h["entries"][-1]["test_accuracy"],
                         "best_evaluated_accuracy": max(e["test_accuracy"] for e in h["entries"])})
    return {"protocol": f"{PETL_EPOCHS} epochs, batch 64, AdamW lr 1e-3 (5e-3 few-shot), wd 1e-4, warm-up 10%, "
                        "cosine; last-epoch test accuracy on the 797 held-out digits", "runs": rows}


def _merge_timings(records: list[dict]) -> None:
    """Add or replace (by stage and run) the timing records in assets/results/timings.json."""
    path = RESULTS / "timings.json"
    timings = {(r["stage"], r["run"]): r for r in (json.loads(path.read_text()) if path.is_file() else [])}
    timings.update({(r["stage"], r["run"]): r for r in records})
    path.write_text(json.dumps(sorted(timings.values(), key=lambda r: (r["stage"], r["run"])), indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("shipped", "sample", "petl", "all"), default="all")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (threads are divided between them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                        help="run only these seeds of the sample and petl stages (the results still list every "
                             "finished run); e.g. --seeds 0 to finish one seed of everything first")
    parser.add_argument("--results-only", action="store_true",
                        help="train nothing: write the sample/petl results and timings of the runs finished so far")
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    stages = ("shipped", "sample", "petl") if args.stage == "all" else (args.stage,)
    for stage in stages:
        if stage == "shipped":
            if args.results_only:  # its results are the entries in assets/models, written when it trains
                continue
            records = run_all(shipped_runs(), args.jobs) + run_all([convpass_shipped_run()], 1)
            convit, deit = shipped_runs()
            zoo.write_entry(convit.out, "convit_fmnist", "ConViT (9 heads, depth 6, 4 GPSA blocks) on Fashion-MNIST")
            zoo.write_entry(deit.out, "deit_fmnist", "DeiT (9 heads, depth 6) on Fashion-MNIST")
            zoo.write_entry(convpass_shipped_run().out, "convpass_digits",
                            "Convpass on the Fashion-MNIST DeiT, adapted to handwritten digits", backbone="deit_fmnist")
        elif stage == "sample":
            records = run_all([c for c in sample_runs() if c.seed in args.seeds], args.jobs, not args.results_only)
            (RESULTS / "sample_efficiency.json").write_text(json.dumps(summarise_sample(), indent=1))
        else:
            records = run_all([c for c in petl_runs() if c.seed in args.seeds], args.jobs, not args.results_only)
            (RESULTS / "petl.json").write_text(json.dumps(summarise_petl(), indent=1))
        _merge_timings(records)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
