"""How fast does the page answer the pointer? A benchmark, not a test (headless Chromium through Playwright).

Against `python app.py` on a free port, one page, one analysed image (a shipped test scene, or --image):

1. hover    the pointer moves onto another patch of the picture of what the model saw; the page redraws every
            block × head for that patch in its own canvas from the attention it holds (app/tabs/attention.js). Timed in
            the page, from the pointer event's time stamp to the end of the drawing (window.__hoverDrawn.ms).
2. click    a click on a patch makes it the query. The page draws the clicked patch's maps of every block × head
            and its enlarged map at once (`click_to_update_ms`, `click_to_enlarged_map_ms`: timed in the page, from
            the click event's time stamp to the end of each drawing: window.__clickDrawn); the server only sets the
            query box after it.
3. change   a block or head typed into its slider's box (Enter): the page redraws the enlarged map
            (`block_or_head_to_enlarged_map_ms`: timed in the page from Gradio's change listener; and from the key's
            event, which adds the time Gradio takes to dispatch the change).
4. tabs     Content vs position, the Equation and Training, each opened in turn: a click on a patch redraws the
            tab's maps for it in the page, before the server sets the query box (`click_to_<tab>_ms`: from the
            click's event to the end of the drawing).

Prints `hover_to_update_ms p50=… p95=…`, `click_to_update_ms p50=… p95=…` (targets of issue 13: p95 ≤ 16 ms for
hover, ≤ 100 ms for click), `click_to_enlarged_map_ms` and `block_or_head_to_enlarged_map_ms` (issue 29: a click,
block, head or scale change redrawn p95 ≤ 100 ms with no server call), with the model, its grid, blocks and heads.

With `--size BLOCKS HEADS GRID` (ViT-B/16: 12 12 14) the hover is timed on attention of that size instead: after the
analysis the page's hover data is replaced by codes of that shape (random: drawing costs the same whatever the
weights), with the model's colour scales and a background of the grid's panel size, and only the hover is timed
(the server knows nothing of that attention, so a click would not match it). For the size of a model the app cannot
load here (the hub is off).

    .venv/bin/python bench/browser_latency.py [--model convit_scenes_gpsa50] [--moves 200] [--clicks 15]
                                              [--size 12 12 14]
"""
from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from petl_core import zoo  # noqa: E402
from scripts.app_server import start_app, stop_app  # noqa: E402
from scripts.browser_page import FILE_INPUT, chromium_context, open_tab, point_on, wait_for_rest  # noqa: E402

SCENE = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]
IN_PAGE_TABS = (("Content vs position", "__gpsaDrawn"), ("Equation", "__equationDrawn"), ("Training", "__replayDrawn"))
"""The other tabs the page draws itself, and what each says it drew (its `ms`: from the click's event)."""


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    return (f"p50={statistics.median(ordered):.1f} p95={ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]:.1f}"
            f" (n={len(ordered)}, max {ordered[-1]:.1f})")


def _synthetic(data: dict, blocks: int, heads: int, grid: int, rng: np.random.Generator) -> dict:
    """The page's hover data `data` with random attention codes of `blocks` × `heads` on a `grid` × `grid` patch grid
    and a gray background of that grid's panel size (cell as app.tabs.attention.AttentionView.hover_data sizes it)."""
    cell = max(2, 72 // grid)

    def encoded(array: np.ndarray) -> str:
        return base64.b64encode(array.astype(np.uint8).tobytes()).decode("ascii")

    codes = rng.integers(0, 256, (blocks, heads, grid * grid, grid * grid), dtype=np.uint8)
    cls_codes = rng.integers(0, 256, (blocks, heads, grid * grid), dtype=np.uint8)
    return {**data, "grid": [grid, grid], "cell": cell, "blocks": blocks, "heads": heads,
            "heads_per_block": [heads] * blocks, "codes": encoded(codes), "cls_codes": encoded(cls_codes),
            "cls_blocks": [True] * blocks,
            "background": encoded(np.full((grid * cell, grid * cell, 3), 128))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=zoo.DEFAULT_MODEL)
    parser.add_argument("--image", type=Path, default=SCENE)
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--clicks", type=int, default=15)
    parser.add_argument("--size", type=int, nargs=3, metavar=("BLOCKS", "HEADS", "GRID"),
                        help="time the hover on random attention of this size (no clicks)")
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_app(Path(tmp), 180)
        try:
            with chromium_context(Path(tmp) / "chromium", 120_000) as context:
                page = context.new_page()
                page.goto(f"{url}?model={args.model}")
                page.locator("#model input").wait_for()
                page.set_input_files(FILE_INPUT, str(args.image))
                page.wait_for_function("() => { const b = document.querySelector('#hover-data textarea, "
                                       "#hover-data input'); return b && b.value.length > 0; }", timeout=120_000)
                wait_for_rest(page, 3_000, 120_000)
                box_js = "document.querySelector('#hover-data textarea, #hover-data input')"
                if args.size:
                    data = _synthetic(page.evaluate(f"() => JSON.parse({box_js}.value)"), *args.size,
                                      np.random.default_rng(0))
                    text = json.dumps(data)
                    page.evaluate(f"text => {{ {box_js}.value = text; }}", text)
                    print(f"hover data replaced: {len(text) / 2**20:.1f} MB of JSON (codes "
                          f"{np.prod(args.size[:2]) * args.size[2] ** 4 / 2**20:.1f} MB before base64)")
                shape = page.evaluate(f"() => JSON.parse({box_js}.value)").get
                rows, cols = shape("grid")
                print(f"model {args.model}: {rows}×{cols} patches, {shape('blocks')} blocks × {shape('heads')} heads; "
                      f"image {args.image.name}")
                picture = page.locator("#picker img").first
                box = picture.bounding_box()
                hover, drawing = [], []
                last = (rows // 2, cols // 2)  # (at rest the canvas shows the query's patch: the centre)
                for _ in range(args.moves):
                    patch = last
                    while patch == last:
                        patch = (rng.randrange(rows), rng.randrange(cols))
                    last = patch
                    at = point_on(picture, (patch[1] + 0.5) / cols, (patch[0] + 0.5) / rows)
                    before = page.evaluate("() => window.__hoverDrawn ? window.__hoverDrawn.count : 0")
                    page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])
                    page.wait_for_function("n => window.__hoverDrawn && window.__hoverDrawn.count > n", arg=before)
                    drawn = page.evaluate("() => window.__hoverDrawn")
                    assert (drawn["row"], drawn["col"]) == patch, (drawn, patch)
                    hover.append(drawn["ms"])
                    drawing.append(drawn["draw_ms"])
                clicks, enlarged, changes, changes_wall = [], [], [], []
                tab_clicks = {tab: [] for tab, _ in IN_PAGE_TABS}
                query = (rows // 2, cols // 2)  # (the page's first query)
                for _ in range(0 if args.size else args.clicks):
                    patch = query
                    while patch == query:
                        patch = (rng.randrange(rows), rng.randrange(cols))
                    query = patch
                    at = point_on(picture, (patch[1] + 0.5) / cols, (patch[0] + 0.5) / rows)
                    before = page.evaluate("() => window.__clickDrawn ? window.__clickDrawn.count : 0")
                    picture.click(position=at)
                    page.wait_for_function("n => window.__clickDrawn && window.__clickDrawn.count > n", arg=before)
                    drawn = page.evaluate("() => [window.__clickDrawn, window.__enlargedDrawn]")
                    assert (drawn[0]["row"], drawn[0]["col"]) == patch, (drawn, patch)
                    assert (drawn[1]["row"], drawn[1]["col"]) == patch, (drawn, patch)
                    clicks.append(drawn[0]["ms"])
                    enlarged.append(drawn[0]["enlarged_ms"])
                    wait_for_rest(page, 1_000, 120_000)
                # a block or head typed into the slider's box (Enter): the enlarged map redrawn in the page
                page.evaluate("() => document.addEventListener('keydown', (e) => { if (e.key === 'Enter') "
                              "window.__enterAt = e.timeStamp; }, true)")
                for i in range(0 if args.size else args.clicks):
                    slider, top = ("layer", shape("blocks")) if i % 2 else ("head", shape("heads"))
                    current = page.evaluate("() => window.__enlargedDrawn")
                    value = (current["block" if slider == "layer" else "head"] + 1) % top
                    box = page.locator(f"#{slider} input[data-testid='number-input']")
                    box.click()
                    page.keyboard.press("Control+A")
                    page.keyboard.type(str(value))
                    page.keyboard.press("Enter")
                    page.wait_for_function("n => window.__enlargedDrawn.count > n", arg=current["count"])
                    drawn = page.evaluate("() => window.__enlargedDrawn")
                    changes_wall.append(drawn["at"] - page.evaluate("() => window.__enterAt"))
                    assert drawn["block" if slider == "layer" else "head"] == value, (drawn, slider, value)
                    changes.append(drawn["ms"])
                # the other views the page draws: a click on the picture redraws the shown tab's maps at once
                for tab, drawn_at in ([] if args.size else IN_PAGE_TABS):
                    open_tab(page, tab)
                    page.wait_for_function(f"() => window.{drawn_at}", timeout=120_000)
                    wait_for_rest(page, 1_000, 120_000)
                    for _ in range(args.clicks):
                        patch = query
                        while patch == query:
                            patch = (rng.randrange(rows), rng.randrange(cols))
                        query = patch
                        before = page.evaluate(f"() => window.{drawn_at}.count")
                        picture.click(position=point_on(picture, (patch[1] + 0.5) / cols, (patch[0] + 0.5) / rows))
                        page.wait_for_function(f"n => window.{drawn_at}.count > n", arg=before)
                        tab_clicks[tab].append(page.evaluate(f"() => window.{drawn_at}.ms"))
                        wait_for_rest(page, 1_000, 120_000)
        finally:
            stop_app(process)
    print(f"hover_to_update_ms {_percentiles(hover)}")
    print(f"  of which drawing the canvas: {_percentiles(drawing)}")
    if clicks:
        print(f"click_to_update_ms {_percentiles(clicks)}")
        print(f"click_to_enlarged_map_ms {_percentiles(enlarged)}")
        print(f"block_or_head_to_enlarged_map_ms {_percentiles(changes)}")
        print(f"  from the Enter key's event to the map drawn (Gradio's dispatch included): "
              f"{_percentiles(changes_wall)}")
    for tab, times in tab_clicks.items():
        if times:
            print(f"click_to_{tab.lower().replace(' ', '_')}_ms {_percentiles(times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
