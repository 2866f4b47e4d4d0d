"""How long from `python app.py` to a served page? A benchmark, not a test.

Side by side in one run, each a fresh process of this venv, interleaved per repetition:

1. imports    `python -c "import torch, timm, gradio"`: what a start that imports everything first waits for;
2. app        `python app.py --port P` (the shipped defaults: every shipped model preloaded) until GET / answers
              200 with the page (the page is served before torch loads), then until its first analysis answers (an
              /analyze of a shipped example on the default model, sent as soon as the page answered: it waits for
              the backend), then stopped.

Prints the median seconds of each and "app / imports" (the issue's target: the app serves its page within 6 s of
its start on the idle 2-core machine).

    .venv/bin/python bench/cold_start.py [--reps 3] [-- extra app.py flags]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core.catalog import DEFAULT_MODEL  # noqa: E402
from scripts.app_server import _free_port, call, upload  # noqa: E402

EXAMPLE = ROOT / "assets" / "examples" / "scene_dress.png"


def _imports() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, timm, gradio"], cwd=ROOT, check=True)
    return time.perf_counter() - started


def _app(extra: list[str]) -> tuple[float, float]:
    """Seconds from starting app.py to its page answering 200, and to its first analysis answering."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADIO_TEMP_DIR": tmp, "GRADIO_ANALYTICS_ENABLED": "False"}
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *extra], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"app.py stopped with {process.returncode}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            page = time.perf_counter() - started
            url = f"http://127.0.0.1:{port}/"
            with httpx.Client(timeout=120) as http:
                call(http, url, "analyze", [upload(http, url, EXAMPLE), DEFAULT_MODEL, None, "center"])
            return page, time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="flags passed on to app.py (after --)")
    args = parser.parse_args()
    _imports()  # warm-up: the OS file cache
    times = {"imports": [], "app": [], "first answer": []}
    for rep in range(args.reps):
        for name in (("imports", "app") if rep % 2 == 0 else ("app", "imports")):
            if name == "imports":
                times[name].append(_imports())
            else:
                page, answer = _app(args.extra)
                times["app"].append(page)
                times["first answer"].append(answer)
    for name, values in times.items():
        print(f"{name:12s} median {statistics.median(values):5.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"app_seconds_to_page={statistics.median(times['app']):.2f} "
          f"app_seconds_to_first_answer={statistics.median(times['first answer']):.2f} "
          f"app_over_imports={statistics.median(times['app']) / statistics.median(times['imports']):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
