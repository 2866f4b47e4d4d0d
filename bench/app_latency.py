"""What does the web app add to an analysis? A benchmark, not a test.

Side by side in one run, on the same images and the same shipped model:

1. petl_core       in this process: read the image, preprocess, trace the model and its initial-weights twin (the
                   two forward passes an analysis makes), top-5, gates and nonlocality: `petl_core` alone;
2. app /analyze    the same through `python app.py` over Gradio's raw REST API (upload the file, POST
                   /gradio_api/call/analyze, read the event stream): the figures, the JSON and HTTP included;
3. app /attention  the block × head grid and the enlarged map for a clicked patch, once the image is analysed
                   (the app's cache makes this a redraw, no forward pass).

Every repetition uses a new image (so the app's cache cannot answer /analyze) and times 1 and 2 back to back,
starting with a different one each time; "× petl_core" is the median of the per-repetition ratios.

    .venv/bin/python bench/app_latency.py [--model convit_fmnist] [--reps 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core import zoo  # noqa: E402
from petl_core.analysis import analyze  # noqa: E402
from petl_core.images import load_image  # noqa: E402
from petl_core.runtime import retain_freed_memory  # noqa: E402
from scripts.app_server import call, start_app, stop_app, upload  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convit_fmnist")
    parser.add_argument("--reps", type=int, default=15)
    args = parser.parse_args()
    retain_freed_memory()  # as app.py does
    torch.set_num_threads(os.cpu_count() or 1)
    folder = Path(tempfile.mkdtemp(prefix="app-latency-"))
    rng = np.random.default_rng(0)
    images = []
    for i in range(args.reps + 1):
        images.append(folder / f"image{i}.png")
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(images[-1])
    loaded = zoo.load(args.model)
    initial = zoo.initial_model(loaded.card)

    def direct(path: Path) -> None:
        inputs = loaded.preprocess(load_image(path)).unsqueeze(0)
        analyze(loaded.model, inputs).summary()
        analyze(initial, inputs)

    process, url = start_app(folder, 180, forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"})
    url = url.rstrip("/")
    times = {"petl_core": [], "app /analyze": [], "app /attention": []}
    ratios = []
    try:
        with httpx.Client(timeout=120) as client:
            direct(images[-1])  # warm-up both sides
            call(client, url, "analyze", [upload(client, url, images[-1]), args.model, None, "center"])
            for rep, path in enumerate(images[:-1]):
                order = ("petl_core", "app /analyze") if rep % 2 == 0 else ("app /analyze", "petl_core")
                took = {}
                for name in order:
                    start = time.perf_counter()
                    if name == "petl_core":
                        direct(path)
                    else:
                        call(client, url, "analyze", [upload(client, url, path), args.model, None, "center"])
                    took[name] = time.perf_counter() - start
                file = upload(client, url, path)
                start = time.perf_counter()
                call(client, url, "attention", [file, args.model, None, "3,4", 2, 1, True])
                took["app /attention"] = time.perf_counter() - start
                for name, seconds in took.items():
                    times[name].append(seconds)
                ratios.append(took["app /analyze"] / took["petl_core"])
    finally:
        stop_app(process)
    print(f"{args.model}, {args.reps} repetitions, {os.cpu_count()} CPU threads, torch {torch.__version__}\n")
    print("| what | median ms | × petl_core |\n|---|---:|---:|")
    base = statistics.median(times["petl_core"])
    for name, values in times.items():
        ratio = statistics.median(ratios) if name == "app /analyze" else statistics.median(values) / base
        print(f"| {name} | {1000 * statistics.median(values):.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
