"""What does each per-click view cost the server? A benchmark, not a test (issue 29).

In this process, on one thread, with the guided path's ConViT and example already analysed (the service's cache
holds the forward passes): each view the page or a REST caller asks for its own patch is called as its endpoint
calls it, and its outputs are made as Gradio sends them (a figure encoded once: app.answers), with a new patch on
every repetition so that no shared answer is reused. Beside them, what the page fetches instead for the views it
draws itself (/attention_data, /compare_data, /gpsa_data, the Training tab's snapshot data), and petl_core's
trace of the image itself (one forward pass with every capture), so every row reads as a multiple of it. These are
the seconds of server CPU that a class shares: on 2 cores, 30 students each asking five such views wait for the
sum.

Prints per view: best and median milliseconds over --reps, and × the analysis.

    .venv/bin/python bench/view_costs.py [--reps 5] [--no-pause]
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.answers import _as_sent  # noqa: E402
from app.guide import CONVIT, DEIT, SCENE  # noqa: E402
from app.service import Service  # noqa: E402
from app.tabs.attention import AttentionView  # noqa: E402
from app.tabs.compare import CompareView  # noqa: E402
from app.tabs.equation import EquationView  # noqa: E402
from app.tabs.gpsa import GpsaView  # noqa: E402
from app.tabs.replay import ReplayView  # noqa: E402
from petl_core import catalog  # noqa: E402
from petl_core.analysis import analyze  # noqa: E402
from petl_core.images import load_image  # noqa: E402
from petl_core.inputs import model_input  # noqa: E402
from scripts.pause_training import paused  # noqa: E402

IMAGE = str(ROOT / "assets" / "examples" / SCENE)


def sent(outputs) -> None:
    """Make `outputs` as Gradio sends them (figures encoded)."""
    for output in outputs if isinstance(outputs, tuple) else (outputs,):
        _as_sent(output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-pause", action="store_true", help="leave the experiments.make_assets runs running")
    args = parser.parse_args()
    torch.set_num_threads(1)
    service = Service("cpu")
    for model in (CONVIT, DEIT):
        service.result_for(IMAGE, model)
    step = catalog.snapshot_steps(CONVIT)[len(catalog.snapshot_steps(CONVIT)) // 2]
    service.snapshot_result(IMAGE, CONVIT, step)
    loaded = service.get_model(CONVIT)
    inputs = model_input(loaded, load_image(IMAGE))[0].unsqueeze(0)
    patches = (f"{r},{c}" for r, c in itertools.product(range(1, 11), range(1, 11)))
    attention, gpsa, equation = AttentionView(service), GpsaView(service), EquationView(service)
    compare, replay = CompareView(service), ReplayView(service)
    views = {
        "analysis (petl_core's trace of the image)": lambda q: analyze(loaded.model, inputs),
        "/attention (figures)": lambda q: attention.render(IMAGE, CONVIT, None, q, 1, 2, True),
        "/gpsa": lambda q: gpsa.render(IMAGE, CONVIT, None, q, 1, True),
        "/equation": lambda q: equation.render(IMAGE, CONVIT, q, 1, 2),
        "/replay": lambda q: replay.replay(IMAGE, CONVIT, step, q),
        "/compare (figure, 2 models)": lambda q: compare.render(IMAGE, [CONVIT, DEIT], 1, q, True),
        "/attention_data (once per image)": lambda q: attention.hover_data(IMAGE, CONVIT, None),
        "/compare_data (once per press, 2 models)": lambda q: compare.data(IMAGE, [CONVIT, DEIT]),
        "/gpsa_data (once per image; also the equation's)": lambda q: gpsa.data(IMAGE, CONVIT, None),
        "Training in the page (once per step, 2 models)": lambda q: replay.render_data(IMAGE, CONVIT, step),
    }
    rows = {}
    with paused(not args.no_pause):
        for name, view in views.items():
            times = []
            for _ in range(args.reps):
                query = next(patches)
                started = time.perf_counter()
                sent(view(query))
                times.append((time.perf_counter() - started) * 1000)
            rows[name] = (min(times), statistics.median(times))
    base = rows["analysis (petl_core's trace of the image)"][1]
    print(f"{CONVIT} on {SCENE}, one thread, {args.reps} repetitions (a new patch each):")
    print("| view | best ms | median ms | × the analysis |\n|---|---:|---:|---:|")
    for name, (best, median) in rows.items():
        print(f"| {name} | {best:.0f} | {median:.0f} | {median / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
