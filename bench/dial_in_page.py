"""How fast does the page score a dial setting itself? A benchmark, not a test (headless Chromium through Playwright).

Against `python app.py` on a free port, one page, the shipped test scene analysed, the Dial tab open: the gates of
one GPSA block (a random block, every head at a random σ) are typed into the gates box, --settings times. The page
scores the probe in its workers (app/tabs/dial.js: onnxruntime-web, one WASM thread each, as many workers as the
machine's cores up to 4) and reports as runs of images end; times are from the page's dial listener to each report
(window.__dialPage.state.reports[].ms). The listener also asks the server for the dial's maps, which the server,
on this same machine, draws while the page scores: the `page_alone_…` lines time the same settings scored with no
server call (window.__dialPage.score), as when the server is another machine (a Space).

Prints `first_estimate_ms p50=… p95=…` (the first 16 images), `exact_ms p50=… p95=…` (all 256), the first
setting's times apart (`cold_…`: the runtime, the graphs and the probe fetched and compiled first), and the
`page_alone_` pair. Issue 29's targets: a first estimate p95 ≤ 0.5 s, the exact score p95 ≤ 3 s.

    .venv/bin/python bench/dial_in_page.py [--model convit_scenes_gpsa50] [--settings 12]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core import zoo  # noqa: E402
from scripts.app_server import start_app, stop_app  # noqa: E402
from scripts.browser_page import FILE_INPUT, chromium_context, open_tab  # noqa: E402

SCENE = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50={statistics.median(ordered):.0f} p95={p95:.0f} (n={len(ordered)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL)
    parser.add_argument("--settings", type=int, default=12)
    args = parser.parse_args()
    blocks, heads = zoo.dimensions(args.model)
    gpsa = len(json.loads((zoo.ASSETS / args.model / "browser" / "dial.json").read_text())["trained_gates"])
    rng = random.Random(0)
    first, exact = [], []
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_app(Path(tmp), 240, forced={"EXPLORER_DEVICE": "cpu"})
        try:
            with chromium_context(Path(tmp) / "chromium", 120_000) as context:
                page = context.new_page()
                page.goto(f"{url}?model={args.model}")
                page.wait_for_selector(FILE_INPUT, state="attached")
                page.set_input_files(FILE_INPUT, str(SCENE))
                page.wait_for_function("() => window.__enlargedDrawn", timeout=120_000)
                open_tab(page, "Dial")
                box = page.locator("#dial-gates textarea")
                for _ in range(args.settings + 1):
                    setting: list = [None] * gpsa
                    setting[rng.randrange(gpsa)] = [round(rng.random(), 3) for _ in range(heads)]
                    gates = json.dumps(setting)
                    box.fill(gates)
                    page.wait_for_function("g => (window.__dialPage.state.shown || {}).gates === g && "
                                           "window.__dialPage.state.shown.seen === window.__dialPage.state.shown"
                                           ".total", arg=gates, timeout=120_000)
                    mine = [r for r in page.evaluate("() => window.__dialPage.state.reports") if r["gates"] == gates]
                    first.append(mine[0]["ms"])
                    exact.append(mine[-1]["ms"])
                alone_first, alone_exact = [], []
                for _ in range(args.settings):
                    setting = [None] * gpsa
                    setting[rng.randrange(gpsa)] = [round(rng.random(), 3) for _ in range(heads)]
                    marks = page.evaluate("""async ([model, gates]) => {
                        const started = performance.now(), marks = [];
                        await window.__dialPage.score(model, gates, () => marks.push(performance.now() - started));
                        return marks;
                    }""", [args.model, json.dumps(setting)])
                    alone_first.append(marks[0])
                    alone_exact.append(marks[-1])
                workers = page.evaluate("() => window.__dialPage.state.workers")
        finally:
            stop_app(process)
    print(f"model {args.model}: {gpsa} GPSA blocks × {heads} heads, {blocks} blocks; 256 probe images, "
          f"{workers} workers of one thread")
    print(f"cold_first_estimate_ms {first[0]:.0f} cold_exact_ms {exact[0]:.0f}")
    print(f"first_estimate_ms {_percentiles(first[1:])}")
    print(f"exact_ms {_percentiles(exact[1:])}")
    print(f"page_alone_first_estimate_ms {_percentiles(alone_first)}")
    print(f"page_alone_exact_ms {_percentiles(alone_exact)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
