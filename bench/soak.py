"""Does the server's memory grow over many requests? A measurement, not a test (tests/test_reliability.py's soak
asserts a bound that these numbers size).

Starts `python app.py` (uploads and exports live 8 s, so the sweeper trims the heap every 2 s) and makes ROUNDS
rounds of what the soak test makes: upload a new image, /analyze, /attention for a new patch, and every 10th round
/export_attention. After every round it reads the server's RSS and its memory in use (the heap glibc has handed out
and not had back, which app.py --memory-log prints 4 times a second). It prints, every 50 rounds, the floor of each
20 rounds after 40 warm-up rounds (the least value, MB) of both: a leak raises the floors of both; RSS also wanders
with the freed memory glibc keeps and cannot return.

    .venv/bin/python bench/soak.py [--rounds 400] [--model convit_fmnist]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.app_server import call, logged_memory_mb, rss_mb, start_app, stop_app, upload  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--model", default="convit_fmnist")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="explorer-soak-"))
    process, url = start_app(tmp, 180, forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
                                               "EXPLORER_FILES_TTL": "8", "EXPLORER_MEMORY_LOG": "0.25"})
    rss: list[float] = []
    in_use: list[float] = []
    try:
        with httpx.Client(timeout=180) as http:
            for i in range(args.rounds):
                path = tmp / f"image{i}.png"
                pixels = np.random.default_rng(1000 + i).integers(0, 255, (48, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(path)
                image = upload(http, url, path)
                path.unlink()
                call(http, url, "analyze", [image, args.model, None, "cls"])
                call(http, url, "attention", [image, args.model, None, f"{i % 8},{(i // 8) % 8}", i % 6, i % 9, True])
                if i % 10 == 0:
                    call(http, url, "export_attention", [image, args.model, None, "3,4", 2, 1, True])
                rss.append(rss_mb(process.pid))
                in_use.append(logged_memory_mb(tmp)["heap_in_use_mb"])
                if i % 50 == 49:
                    for label, values in (("RSS", rss), ("in use", in_use)):
                        floors = [min(values[start:start + 20]) for start in range(40, len(values), 20)]
                        print(f"{i + 1} rounds; {label} floors: {' '.join(str(round(v)) for v in floors)}",
                              flush=True)
    finally:
        stop_app(process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
