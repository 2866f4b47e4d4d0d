"""How does the app hold up under concurrent users? A benchmark, not a test.

Side by side in one run, on the same machine and the same distinct images (so no cache answers):

1. petl_core     in this process, one analysis after another: read the image, preprocess, trace the model and its
                 initial-weights twin, top-5, gates and nonlocality (what one /analyze computes);
2. app /analyze  `python app.py` (its defaults: --concurrency 2) called by C concurrent clients over Gradio's raw
                 REST API, each uploading its own images: the figures, the JSON, HTTP and the queue included.

For each number of clients it prints the success rate, the latency percentiles, the throughput, that throughput as
a fraction of petl_core's (× petl_core: 1.0 would mean the server adds nothing), and the server's RSS before and
after.

    .venv/bin/python bench/load.py [--model convit_fmnist] [--clients 8 16 32] [--requests 96]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
from scripts.app_server import call, rss_mb, start_app, stop_app, upload  # noqa: E402


def _images(folder: Path, count: int, offset: int) -> list[Path]:
    paths = []
    for i in range(offset, offset + count):
        paths.append(folder / f"image{i}.png")
        rng = np.random.default_rng(i)
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convit_fmnist")
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--requests", type=int, default=96, help="requests per number of clients")
    args = parser.parse_args()
    retain_freed_memory()  # as app.py does
    torch.set_num_threads(os.cpu_count() or 1)
    folder = Path(tempfile.mkdtemp(prefix="app-load-"))

    loaded = zoo.load(args.model)
    initial = zoo.initial_model(loaded.card)
    direct_images = _images(folder, 32, 0)
    start = time.perf_counter()
    for path in direct_images:
        inputs = loaded.preprocess(load_image(path)).unsqueeze(0)
        analyze(loaded.model, inputs).summary()
        analyze(initial, inputs)
    direct_rate = len(direct_images) / (time.perf_counter() - start)

    process, url = start_app(folder, 180, forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"})
    rows = []
    offset = 1000
    try:
        with httpx.Client(timeout=120) as warm:
            call(warm, url, "analyze", [upload(warm, url, direct_images[0]), args.model, None, "center"])
        for clients in args.clients:
            images = _images(folder, args.requests, offset)
            offset += args.requests
            rss_before = rss_mb(process.pid)

            def client_run(first: int, images: list[Path] = images, clients: int = clients) -> list[tuple[bool, float]]:
                outcomes = []
                with httpx.Client(timeout=300) as http:
                    for path in images[first::clients]:
                        begin = time.perf_counter()
                        try:
                            call(http, url, "analyze", [upload(http, url, path), args.model, None, "center"])
                            outcomes.append((True, time.perf_counter() - begin))
                        except Exception:  # a refused or failed request counts against the success rate
                            outcomes.append((False, time.perf_counter() - begin))
                return outcomes

            begin = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                outcomes = [o for run in pool.map(client_run, range(clients)) for o in run]
            wall = time.perf_counter() - begin
            latencies = [t for ok, t in outcomes if ok]
            rate = len(latencies) / wall
            rows.append((clients, len(outcomes), 100 * len(latencies) / len(outcomes), statistics.median(latencies),
                         _percentile(latencies, 95), rate, rate / direct_rate, rss_before, rss_mb(process.pid)))
    finally:
        stop_app(process)
    print(f"{args.model}, {os.cpu_count()} CPU cores, torch {torch.__version__}; app.py defaults (--concurrency 2); "
          f"petl_core alone: {direct_rate:.2f} analyses/s\n")
    print("| clients | requests | success | p50 s | p95 s | requests/s | × petl_core | server RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for clients, total, success, p50, p95, rate, ratio, before, after in rows:
        print(f"| {clients} | {total} | {success:.0f}% | {p50:.2f} | {p95:.2f} | {rate:.2f} | {ratio:.2f} | "
              f"{before:.0f} → {after:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
