"""Screenshots of every view of the app, for the README and docs: starts `app.py` on a free local port, drives it in
headless Chromium (Debian's /usr/bin/chromium through Playwright) at 1400×1000 and saves one PNG per view.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Views: attention (the default model on a test scene of its task, a patch on the item clicked), gpsa, gates,
nonlocality, compare, findings, dial (all gates at 0), equation, replay, atlas, convpass (the first shipped Convpass
model on a test scene of its task), guide (step 2 of the guided path) and real_scale_attention (ConViT-S on a
random-weights file of its architecture, made by scripts/make_random_weights.py: a photo at 224 px). Each PNG
is the full page, reduced to fewer colours when it would be larger than --max-kb, and cut to the views below the
shared inputs when even that is too large.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from app_server import start_app, stop_app  # this folder is on sys.path when the script runs
from browser_page import CHROMIUM_ARGS, FILE_INPUT, VIEWPORT, open_tab, point_on, wait_until_idle
from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from petl_core import zoo  # noqa: E402
from petl_core.analysis import analyze  # noqa: E402
from petl_core.images import load_image  # noqa: E402
from petl_core.query import Query  # noqa: E402

EXAMPLES = ROOT / "assets" / "examples"
SCENE = EXAMPLES / "scene_pullover.png"  # a large item with a piece of a shoe below it
ON_THE_ITEM = (0.3, 0.45)  # where the patch clicked lies, as fractions of width and height
DIGIT_SCENE = EXAMPLES / "digit_scene_3.png"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="folder for the PNGs")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium executable")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for the app and for each view")
    parser.add_argument("--max-kb", type=int, default=390, help="largest PNG wanted, in KiB")
    return parser.parse_args(argv)


def top1(model: str, path: Path) -> str:
    """`model`'s top-1 class for the image at `path`, computed without the app (what the page must show)."""
    loaded = zoo.load(model)
    return analyze(loaded.model, loaded.preprocess(load_image(path)).unsqueeze(0)).summary()["top5"][0]["label"]


def grid(model: str) -> int:
    """Patches per side of a shipped model."""
    kwargs = zoo.ModelCard.load(zoo.ASSETS / model).architecture["kwargs"]
    return kwargs["img_size"] // kwargs["patch_size"]


# --------------------------------------------------------------------------------------------------- waiting
def settle(page: Page, timeout: float) -> None:
    """Wait until no component shows Gradio's loading indicator or its border of an answer still streaming in (the
    dial answers twice), and every visible image has loaded."""
    try:
        wait_until_idle(page, min(timeout, 30) * 1000)
        page.wait_for_function("() => ![...document.querySelectorAll('.generating')]"
                               ".some(e => e.offsetParent !== null)", timeout=min(timeout, 30) * 1000)
    except PlaywrightTimeout:
        print("screenshots.py: the page still looks busy; taking the screenshot anyway", file=sys.stderr)
    page.wait_for_timeout(700)  # plotly's first layout pass and the fade of the loading overlays


def image_in(page: Page, elem_id: str, timeout: float) -> None:
    """Wait for an <img> (an image or a matplotlib plot) drawn inside `elem_id`."""
    page.wait_for_function("id => { const i = document.querySelector(`#${id} img`); "
                           "return i && i.complete && i.naturalWidth > 0; }", arg=elem_id, timeout=timeout * 1000)


def plotly_in(page: Page, elem_id: str, timeout: float) -> None:
    page.wait_for_selector(f"#{elem_id} .js-plotly-plot svg.main-svg", timeout=timeout * 1000)


# --------------------------------------------------------------------------------------------------- saving
def save(page: Page, path: Path, max_kb: int) -> Path:
    """The full page as PNG of at most `max_kb` KiB: as is, else in 256, 160 or 96 colours, else only from the tabs
    down. The window is made as tall as the page first: a full-page screenshot of a shorter window resizes it while
    shooting, and plotly redraws on a resize (a colour bar was caught half drawn)."""
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    page.wait_for_timeout(1500)  # plotly's redraw after the resize
    try:
        full = png = page.screenshot(full_page=True)
        for colours in (256, 160, 96):
            if len(png) <= max_kb * 1024:
                break
            png = _fewer_colours(full, colours)
        if len(png) > max_kb * 1024:
            top = page.locator("[role=tablist]").first.bounding_box()
            clip = {"x": 0, "y": top["y"] - 8, "width": VIEWPORT["width"], "height": height - top["y"] + 8}
            png = _fewer_colours(page.screenshot(full_page=True, clip=clip), 160)
    finally:
        page.set_viewport_size(VIEWPORT)
    path.write_bytes(png)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(png) // 1024} KB", flush=True)
    return path


def _fewer_colours(png: bytes, colours: int) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT,
                                                                   dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------------- the views
def _run_compare(page: Page, ms: float) -> None:
    page.locator("#compare-run").click()
    page.wait_for_function("() => window.__compareDrawn", timeout=ms)  # (drawn in the page)


def _gpsa_drawn(page: Page, ms: float) -> None:
    page.wait_for_function("() => window.__gpsaDrawn", timeout=ms)  # (drawn in the page)


def _replay_drawn(page: Page, ms: float) -> None:
    page.wait_for_function("() => window.__replayDrawn && window.__replayDrawn.convit", timeout=ms)  # (in the page)


def _findings_drawn(page: Page, ms: float) -> None:
    for elem_id in ("findings-sample", "findings-petl"):
        page.wait_for_selector(f"#{elem_id} .js-plotly-plot svg.main-svg, #{elem_id} img", timeout=ms)


def _all_content(page: Page, ms: float) -> None:
    # the tab opens on the model as trained, whose note has a probe accuracy too: wait for the preset's own
    note = page.locator("#dial-note")
    expect(note).to_contain_text("Probe accuracy", timeout=ms)
    before = note.inner_text()
    page.get_by_text("all content (σ = 0): a ViT", exact=True).click()
    page.wait_for_function("before => { const t = document.querySelector('#dial-note').innerText; "
                           "return t !== before && t.includes('Probe accuracy'); }", arg=before, timeout=ms)
    page.wait_for_function("() => window.__dialDrawn && window.__dialDrawn.model", timeout=ms)  # (in the page)


def _equation_written(page: Page, ms: float) -> None:
    page.wait_for_function("() => window.__equationDrawn", timeout=ms)  # (drawn in the page)
    expect(page.locator("#equation-page-text")).to_contain_text("σ", timeout=ms)


VIEWS = (  # tab, file name, what to do first, images and plotly plots to wait for
    ("Content vs position", "gpsa", _gpsa_drawn, [], ["gpsa-centres"]),
    ("Gates", "gates", None, [], ["gates-now", "gates-history"]),
    ("Nonlocality", "nonlocality", None, [], ["nonlocality-image", "nonlocality-history"]),
    ("Compare", "compare", _run_compare, [], []),
    ("Findings", "findings", _findings_drawn, [], []),
    ("Dial", "dial", _all_content, [], []),
    ("Equation", "equation", _equation_written, [], []),
    ("Training", "replay", _replay_drawn, [], []),
    ("Atlas", "atlas", None, [], ["atlas-plot"]),
)
"""The views shot after the attention view, in order, on the same image and model."""


def take(page: Page, url: str, out: Path, timeout: float, max_kb: int) -> list[Path]:
    ms = timeout * 1000
    saved = []
    page.goto(url)
    page.wait_for_selector(FILE_INPUT, state="attached", timeout=ms)

    page.set_input_files(FILE_INPUT, str(SCENE))
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_text(top1(zoo.DEFAULT_MODEL, SCENE),
                                                                                  timeout=ms)
    image_in(page, "picker", timeout)
    page.wait_for_function("() => window.__enlargedDrawn", timeout=ms)  # (the page draws the attention tab)
    settle(page, timeout)
    picture = page.locator("#picker img").first
    fx, fy = ON_THE_ITEM
    row, col = int(fy * grid(zoo.DEFAULT_MODEL)), int(fx * grid(zoo.DEFAULT_MODEL))
    picture.click(position=point_on(picture, fx, fy))
    expect(page.locator("#query textarea, #query input").first).to_have_value(f"{row},{col}", timeout=ms)
    expect(page.locator("#enlarged-caption")).to_contain_text(f"attention of the {Query.at(row, col).label}",
                                                              timeout=ms)
    settle(page, timeout)
    saved.append(save(page, out / "attention.png", max_kb))

    for tab, name, prepare, images, plots in VIEWS:
        open_tab(page, tab)
        if prepare:
            prepare(page, ms)
        for elem_id in images:
            image_in(page, elem_id, timeout)
        for elem_id in plots:
            plotly_in(page, elem_id, timeout)
        settle(page, timeout)
        saved.append(save(page, out / f"{name}.png", max_kb))

    open_tab(page, "Convpass")
    convpass = next(name for name, family in zoo.SHIPPED.items() if family == "convpass")
    page.locator("#model input").click()
    page.get_by_role("option", name=f"{convpass} (shipped)").click()
    expect(page.locator("#model input")).to_have_value(f"{convpass} (shipped)")
    image_in(page, "bypass-maps", timeout)
    settle(page, timeout)
    before = page.locator("#bypass-maps img").first.get_attribute("src")
    page.set_input_files(FILE_INPUT, str(DIGIT_SCENE))
    page.wait_for_function("before => { const i = document.querySelector('#bypass-maps img'); "
                           "return i && i.getAttribute('src') !== before && i.complete; }", arg=before, timeout=ms)
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_text(top1(convpass, DIGIT_SCENE),
                                                                                  timeout=ms)
    plotly_in(page, "bypass-share", timeout)
    image_in(page, "bypass-channels", timeout)
    settle(page, timeout)
    saved.append(save(page, out / "convpass.png", max_kb))

    page.locator("#guide-step").get_by_text("2. ", exact=False).click()  # a guide step opens its view
    expect(page.locator("#guide-text")).to_contain_text("Step 2 of", timeout=ms)
    _gpsa_drawn(page, ms)
    settle(page, timeout)
    saved.append(save(page, out / "guide.png", max_kb))
    saved.append(_real_scale(page, out, timeout, max_kb))
    return saved


def _real_scale(page: Page, out: Path, timeout: float, max_kb: int) -> Path:
    """The attention view of ConViT-S (224 px, 14×14 patches, 12 blocks × 9 heads) on a weights file of its
    architecture at random initialisation (scripts/make_random_weights.py; offline, the hub's weights cannot come),
    on a photo: the views at the scale of the paper's models."""
    from make_random_weights import make  # (this folder is on sys.path)

    ms = timeout * 1000
    name = "convit_small.fb_in1k"
    weights = make(name, Path(tempfile.mkdtemp(prefix="explorer-convit-s-")) / "convit_small_random.safetensors")
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(name)} ")).click()
    page.get_by_text("Your own weights (optional)").click()
    page.locator("#weights input[type=file]").set_input_files(str(weights))
    page.set_input_files(FILE_INPUT, str(EXAMPLES / "chelsea.png"))
    open_tab(page, "Attention")
    # the attention data of a 14×14 grid, drawn
    page.wait_for_function("() => { const t = document.querySelector('#hover-data textarea, #hover-data input'); "
                           "return t && t.value.includes('\"grid\": [14, 14]') && window.__enlargedDrawn; }",
                           timeout=ms)
    settle(page, timeout)
    return save(page, out / "real_scale_attention.png", max_kb)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.chromium).exists():
        print(f"screenshots.py: no Chromium at {args.chromium}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="explorer-screenshots-"))
    os.environ["XDG_CONFIG_HOME"], os.environ["XDG_CACHE_HOME"] = str(tmp / "config"), str(tmp / "cache")
    process, url = start_app(tmp, args.timeout, defaults={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"})
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(str(tmp / "profile"), executable_path=args.chromium,
                                                           headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)
            context.set_default_timeout(args.timeout * 1000)
            expect.set_options(timeout=args.timeout * 1000)
            try:
                take(context.new_page(), url, args.out.resolve(), args.timeout, args.max_kb)
            finally:
                context.close()
    finally:
        stop_app(process)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
