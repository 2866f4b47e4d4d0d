"""The app in a real browser (Debian's headless Chromium through Playwright): upload, click a patch, every tab, a
redraw after each analysis, a bad upload. One browser per module; the first four tests share one page (they build on
each other), the last opens its own. A screenshot of each test's final page goes to $EXPLORER_ARTEFACTS, or to a
pytest temp folder."""
from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from browser_support import expect  # (skips the module without Chromium or Playwright)

from app.guide import STEPS
from app.links import example_path
from app.uploads import EXAMPLES
from petl_core import findings, zoo
from petl_core.analysis import analyze
from petl_core.diagnostics import TrainingCurves
from petl_core.dial import DialProbe, probe_set
from petl_core.examples import task_examples
from petl_core.figures import _quantised as attention_codes_of
from petl_core.figures import attention_codes, attention_lut, class_token_codes
from petl_core.images import load_image
from petl_core.inputs import model_input
from petl_core.query import Query
from scripts.app_server import endpoint_ids
from scripts.browser_page import (
    FILE_INPUT,
    chromium_context,
    open_tab,
    point_on,
    wait_for_rest,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHELSEA = ROOT / "assets" / "examples" / "chelsea.png"
FASHION_MNIST = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"]
SCENE = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]  # a test scene the default model was made for
_ARCH = zoo.ModelCard.load(zoo.ASSETS / zoo.DEFAULT_MODEL).architecture["kwargs"]
GRID = _ARCH["img_size"] // _ARCH["patch_size"]  # the default model's patch grid
SLOW = 60_000  # ms: the machine may be busy; the first analysis loads and traces the model
QUIET, REST = 5_000, 180_000  # ms: a page at rest makes no server call for QUIET; it must come to rest within REST


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("EXPLORER_ARTEFACTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return Path(folder)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """A persistent Chromium context whose profile, config and cache all live in a temp folder."""
    with chromium_context(tmp_path_factory.mktemp("chromium"), SLOW) as context:
        yield context


def _open(browser, url: str):
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector(FILE_INPUT, state="attached")
    return page


@pytest.fixture(scope="module")
def shared(browser, app_server: str):
    """One page for the upload, click and tab tests, which build on each other in that order."""
    page = _open(browser, app_server)
    yield page
    page.close()


def _screenshot(page, artefacts: Path, name: str) -> None:
    """The page as the test left it (also after a failure); an artefact, never the reason a test fails."""
    try:
        page.screenshot(path=str(artefacts / f"{name}.png"), full_page=True)
    except Exception as e:
        print(f"no screenshot for {name}: {e}")


@pytest.fixture
def page(shared, artefacts: Path, request: pytest.FixtureRequest):
    yield shared
    _screenshot(shared, artefacts, request.node.name)


@pytest.fixture
def fresh_page(browser, app_server: str, artefacts: Path, request: pytest.FixtureRequest):
    """A page of its own, opened on the app as a new visitor sees it."""
    page = _open(browser, app_server)
    yield page
    _screenshot(page, artefacts, request.node.name)
    page.close()


def _top1(path: Path, model: str = zoo.DEFAULT_MODEL) -> str:
    """`model`'s top-1 class for the image at `path`, computed here without the app (a light background inverted
    for the grayscale models, as the page does by default)."""
    loaded = zoo.load(model)
    return analyze(loaded.model, model_input(loaded, load_image(path))[0].unsqueeze(0)).summary()["top5"][0]["label"]


def _top5(page):
    """Wait until the Top-5 label shows a Fashion-MNIST class; return the top-1 class."""
    heading = page.locator("#top5 [data-testid='label-output-value']")
    expect(heading).to_have_text(re.compile("|".join(re.escape(c) for c in FASHION_MNIST)), timeout=SLOW)
    return heading.inner_text().strip()


def _image_src(page, elem_id: str) -> str:
    img = page.locator(f"#{elem_id} img").first
    expect(img).to_be_visible()
    page.wait_for_function("id => { const i = document.querySelector(`#${id} img`); "
                           "return i && i.complete && i.naturalWidth > 0; }", arg=elem_id)
    return img.get_attribute("src")


def _new_image_src(page, elem_id: str, before: str) -> str:
    """Wait until the <img> of `elem_id` shows something other than `before`; its new src."""
    page.wait_for_function("([id, before]) => { const i = document.querySelector(`#${id} img`); "
                           "return i && i.getAttribute('src') !== before && i.complete && i.naturalWidth > 0; }",
                           arg=[elem_id, before], timeout=SLOW)
    return page.locator(f"#{elem_id} img").first.get_attribute("src")


def _plotly(page, elem_id: str):
    plot = page.locator(f"#{elem_id} .js-plotly-plot")
    expect(plot.locator("svg.main-svg").first).to_be_attached()
    return plot


def test_upload_analyses_and_shows_the_model_input(page):
    page.set_input_files(FILE_INPUT, str(SCENE))
    assert _top5(page) == _top1(SCENE)
    expect(page.locator("#top5")).to_contain_text("%")
    assert _image_src(page, "picker")
    centre = Query.at(GRID // 2, GRID // 2)
    expect(page.locator("#enlarged-caption")).to_have_text(f"block 0, head 0: attention of the {centre.label}",
                                                           timeout=SLOW)
    expect(page.locator("#query textarea, #query input").first).to_have_value("center")


def _hover_data(page) -> dict:
    return json.loads(page.locator("#hover-data textarea, #hover-data input").first.input_value())


def _enlarged_drawn(page, **shown) -> dict:
    """Wait until the page's enlarged map shows `shown` (block, head, row, col, log); what it says it drew."""
    page.wait_for_function("shown => window.__enlargedDrawn && Object.entries(shown).every(([k, v]) => "
                           "window.__enlargedDrawn[k] === v)", arg=shown, timeout=SLOW)
    return page.evaluate("() => window.__enlargedDrawn")


def _enlarged_cell(page, data: dict, row: int, col: int) -> np.ndarray:
    """The RGB the page's enlarged map shows at the centre of cell (row, col)."""
    cell = max(4, 432 // max(data["grid"]))  # (attention.js: enlarged maps about 432 px a side, 34 and 6 px margins)
    x, y = 34 + col * cell + cell // 2, 6 + row * cell + cell // 2
    return np.array(page.evaluate("([x, y]) => Array.from(document.getElementById('enlarged-canvas')"
                                  ".getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3))", [x, y]))


def test_clicking_a_patch_makes_it_the_query_and_the_page_draws_its_maps(page):
    """A click draws the clicked patch's enlarged map in the page at once, in the code's colour over the model
    input; a block, head or scale change redraws it with no server call; the class token's maps come from the
    same data; the export is the server's."""
    query = page.locator("#query textarea, #query input").first
    expect(query).to_have_value("center")
    picker_before = _image_src(page, "picker")
    fx, fy = 0.3, 0.7
    row, col = int(fy * GRID), int(fx * GRID)
    picture = page.locator("#picker img").first
    picture.click(position=point_on(picture, fx, fy))
    drawn = _enlarged_drawn(page, row=row, col=col, block=0, head=0)
    assert drawn["ms"] < 1000  # (drawn on the click, before the server sets the query box)
    expect(query).to_have_value(f"{row},{col}", timeout=SLOW)
    assert _new_image_src(page, "picker", picker_before)  # the server frames the query on the picture
    caption = page.locator("#enlarged-caption")
    expect(caption).to_have_text(f"block 0, head 0: attention of the {Query.at(row, col).label}")
    wait_for_rest(page, QUIET, REST)

    data = _hover_data(page)
    patches = GRID * GRID
    codes = np.frombuffer(base64.b64decode(data["codes"]), np.uint8).reshape(data["blocks"], data["heads"], patches,
                                                                            patches)
    cls_codes = np.frombuffer(base64.b64decode(data["cls_codes"]), np.uint8).reshape(data["blocks"], data["heads"],
                                                                                    patches)
    loaded = zoo.load(zoo.DEFAULT_MODEL)
    trace = analyze(loaded.model, model_input(loaded, load_image(SCENE))[0].unsqueeze(0)).trace
    expected, has_class_token = class_token_codes(trace)
    assert np.abs(cls_codes.astype(int) - expected).max() <= 1 and data["cls_blocks"] == has_class_token

    def shown_in_its_colour(block: int, head: int, weights: np.ndarray, log_scale: bool) -> None:
        # the cells the query attends to most and least: the code's colour alone, never tinted by the picture
        # (issue 30), within 1 of the colour bar's (the canvas scales the cell)
        for key in (int(weights.argmax()), int(weights.argmin())):
            r, c = divmod(key, GRID)
            lut = attention_lut(log_scale)[weights[key]].astype(float)
            pixel = _enlarged_cell(page, data, r, c)
            assert np.abs(pixel - lut).max() <= 1, (block, head, key, pixel, lut)

    shown_in_its_colour(0, 0, codes[0, 0, row * GRID + col], True)
    joins = _listening(page)
    for slider, value in (("head", 2), ("layer", 3)):
        _type_number(page, slider, value)
    _enlarged_drawn(page, block=3, head=2, row=row, col=col, log=True)
    expect(caption).to_have_text(f"block 3, head 2: attention of the {Query.at(row, col).label}")
    shown_in_its_colour(3, 2, codes[3, 2, row * GRID + col], True)
    page.locator("#log-scale input").uncheck()
    _enlarged_drawn(page, block=3, head=2, log=False)
    shown_in_its_colour(3, 2, codes[3, 2, row * GRID + col], False)
    page.locator("#log-scale input").check()
    _enlarged_drawn(page, block=3, head=2, log=True)
    assert joins == []  # block, head and scale: drawn in the page alone
    # the weight under the pointer, read back from its code
    key = int(codes[3, 2, row * GRID + col].argmax())
    cell = max(4, 432 // GRID)
    page.locator("#enlarged-canvas").hover(position={"x": 34 + (key % GRID + 0.5) * cell,
                                                     "y": 6 + (key // GRID + 0.5) * cell})
    weight = float(trace.attention[3][0, 2, trace.num_prefix[3] + row * GRID + col, trace.num_prefix[3] + key])
    text = page.locator("#enlarged-value").inner_text()
    shown = float(re.search(r"attention ≈ ([0-9.e-]+)", text).group(1))
    # (within a code's half step and 3 digits' rounding)
    assert f"row {key // GRID}, col {key % GRID}" in text and abs(shown / weight - 1) < 0.02, (text, weight)

    # the class token: blocks without one say so; a block with one draws its map
    page.get_by_role("button", name="Class token").click()
    expect(query).to_have_value("cls", timeout=SLOW)
    first_with = has_class_token.index(True)
    if first_with > 3:
        expect(caption).to_have_text("block 3 has no class token: click a patch to set the query")
    expect(page.locator("#hover-caption")).to_contain_text("attention of the class token")
    _type_number(page, "layer", first_with)
    _enlarged_drawn(page, block=first_with, head=2, row=None, col=None)
    expect(caption).to_have_text(f"block {first_with}, head 2: attention of the class token")
    shown_in_its_colour(first_with, 2, cls_codes[first_with, 2], True)
    query.fill(f"{row},{col}")  # (the next tests go on from the clicked patch)
    query.press("Enter")
    _enlarged_drawn(page, row=row, col=col)

    page.get_by_role("button", name="Export view (PNG, HTML, JSON, NPZ)").first.click()
    files = page.locator("#attention-files")
    for name in ("attention_grid.png", "attention_enlarged.html", "attention.json", "attention.npz"):
        expect(files.locator(f'a[href$="/{name}"]')).to_have_count(1, timeout=SLOW)


def test_every_tab_renders(page):
    open_tab(page, "Content vs position")
    page.wait_for_function("() => window.__gpsaDrawn", timeout=SLOW)
    _plotly(page, "gpsa-centres")

    open_tab(page, "Gates")
    expect(_plotly(page, "gates-history")).to_contain_text("σ(λ)")

    open_tab(page, "Nonlocality")
    history = _plotly(page, "nonlocality-history")
    expect(history).to_contain_text("ConViT")
    expect(history).to_contain_text("DeiT")

    open_tab(page, "Findings")
    expect(page.locator("#findings-sample .js-plotly-plot svg.main-svg, #findings-sample img").first).to_be_visible()
    protocol = page.locator("#findings-sample-text")
    shown = findings.budgets_with("sample_efficiency")[0]
    expect(protocol).to_contain_text(findings.load_results("sample_efficiency", shown)["protocol"])
    page.locator("#findings-sample-budget").get_by_text("long", exact=True).click()  # another budget redraws
    expect(protocol).to_contain_text(findings.load_results("sample_efficiency", "long")["protocol"])
    petl = page.locator("#findings-petl-text")
    expect(petl).to_contain_text(findings.load_results("petl", findings.budgets_with("petl")[0])["protocol"])
    page.locator("#findings-petl-budget").get_by_text("2h (shipped models)", exact=True).click()
    expect(petl).to_contain_text(findings.load_results("petl", "2h")["protocol"])

    open_tab(page, "Convpass")
    expect(_plotly(page, "bypass-maps")).to_contain_text("no Convpass bypasses")
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(r"^convpass_digits")).click()
    expect(page.locator("#model input")).to_have_value(re.compile(r"^convpass_digits"))
    expect(page.locator("#bypass-maps img").first).to_be_visible(timeout=SLOW)
    expect(page.locator("#bypass-maps .js-plotly-plot")).to_have_count(0)
    assert _image_src(page, "bypass-maps")


def test_hovering_the_picture_draws_every_block_and_head_in_the_page(fresh_page):
    """Moving the pointer over what the model saw redraws every block × head for the patch under it in the page's
    own canvas, with no server call; the page holds petl_core's attention of this image (quantised on the fixed log
    range), and a drawn pixel is that code's colour over the model input."""
    page = fresh_page
    page.set_input_files(FILE_INPUT, str(SCENE))
    data_box = page.locator("#hover-data textarea, #hover-data input").first
    page.wait_for_function("() => { const b = document.querySelector('#hover-data textarea, #hover-data input'); "
                           "return b && b.value.length > 0; }", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    # at rest, before any move, the canvas shows the query's patch (the centre)
    assert page.evaluate("() => window.__hoverDrawn && [window.__hoverDrawn.row, window.__hoverDrawn.col]") == [
        GRID // 2, GRID // 2]
    data = json.loads(data_box.input_value())
    loaded = zoo.load(zoo.DEFAULT_MODEL)
    trace = analyze(loaded.model, model_input(loaded, load_image(SCENE))[0].unsqueeze(0)).trace
    expected = attention_codes(trace)
    codes = np.frombuffer(base64.b64decode(data["codes"]), np.uint8).reshape(expected.shape)
    assert np.abs(codes.astype(int) - expected).max() <= 1  # (float rounding at a code's edge)
    assert data["grid"] == [GRID, GRID] and data["blocks"] == len(trace.attention)

    picture = page.locator("#picker img").first
    box = picture.bounding_box()
    moves = [(2, 3), (GRID - 1, 0), (5, GRID - 2)]

    def move_over(row: int, col: int) -> None:
        at = point_on(picture, (col + 0.5) / GRID, (row + 0.5) / GRID)
        page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])
        page.wait_for_function("([r, c]) => window.__hoverDrawn && window.__hoverDrawn.row === r && "
                               "window.__hoverDrawn.col === c", arg=[row, col])

    calls = []
    page.on("request", lambda request: calls.append(request.url) if "/queue/join" in request.url else None)
    for row, col in moves:
        move_over(row, col)
    assert calls == []
    expect(page.locator("#hover-caption")).to_contain_text(f"attention of the {Query.at(*moves[-1]).label}")
    # one pixel: block 1, head 2, the key the query attends to most, at the centre of its cell
    row, col = moves[-1]
    query = row * GRID + col
    key = int(codes[1, 2, query].argmax())
    cell, heads = data["cell"], data["heads"]
    panel = GRID * cell
    x = 58 + 2 * (panel + 3) + (key % GRID) * cell + cell // 2  # (attention.js: LEFT 58, TOP 18, gaps of 3)
    y = 18 + 1 * (panel + 3) + (key // GRID) * cell + cell // 2
    drawn = page.evaluate("([x, y]) => Array.from(document.getElementById('hover-canvas').getContext('2d')"
                          ".getImageData(x, y, 1, 1).data.slice(0, 3))", [x, y])
    lut = attention_lut(True)[codes[1, 2, query, key]]
    assert np.abs(np.array(drawn) - lut).max() <= 1, (drawn, lut)  # its weight's colour alone (issue 30)
    assert heads == max(a.shape[1] for a in trace.attention)

    # a click draws the clicked patch in the page at once; the server then makes it the query, which the canvas
    # shows once the pointer leaves the picture; a typed query and the colour scale redraw it too
    at = point_on(picture, 1.5 / GRID, 1.5 / GRID)
    picture.click(position=at)
    clicked = page.evaluate("() => window.__clickDrawn")
    assert (clicked["row"], clicked["col"]) == (1, 1) and clicked["count"] == 1
    query_box = page.locator("#query textarea, #query input").first
    expect(query_box).to_have_value("1,1", timeout=SLOW)
    page.mouse.move(1, 1)
    page.wait_for_function("() => window.__hoverDrawn.row === 1 && window.__hoverDrawn.col === 1")
    query_box.fill("4,6")
    query_box.press("Enter")
    page.wait_for_function("() => window.__hoverDrawn.row === 4 && window.__hoverDrawn.col === 6")
    before = page.evaluate("() => window.__hoverDrawn.count")
    page.locator("#log-scale input").uncheck()
    page.wait_for_function("n => window.__hoverDrawn.count > n && window.__hoverDrawn.row === 4", arg=before)
    page.locator("#log-scale input").check()


def test_compare_is_drawn_in_the_page_and_follows_the_block_query_and_scale(fresh_page):
    """Compare fetches the models' attention once (/compare_data) and draws them in the page: each head's cell in
    its code's colour over the model input, the numbers of the block shown; a block, query or scale change redraws
    with no server call (issue 30: the block slider no longer leaves the old figure)."""
    page = fresh_page
    page.set_input_files(FILE_INPUT, str(SCENE))
    page.wait_for_function("() => window.__enlargedDrawn", timeout=SLOW)
    open_tab(page, "Compare")
    page.locator("#compare-run").click()
    page.wait_for_function("() => window.__compareDrawn", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    data = json.loads(page.locator("#compare-data textarea, #compare-data input").first.input_value())
    names = [m["model"] for m in data["models"]]
    assert page.evaluate("() => window.__compareDrawn.models") == names and len(names) >= 2
    centre = Query.at(GRID // 2, GRID // 2)
    caption = page.locator("#compare-caption")
    expect(caption).to_have_text(f"block 0, attention of the {centre.label} (log scale)")

    joins = _listening(page)
    _type_number(page, "compare-layer", 3)
    page.wait_for_function("() => window.__compareDrawn.block === 3")
    expect(caption).to_have_text(f"block 3, attention of the {centre.label} (log scale)")
    page.get_by_text("Top-5 and nonlocality at this block").click()  # (the numbers panel, folded away)
    numbers = page.locator("#compare-numbers")
    expect(numbers).to_contain_text("nonlocality_per_head")
    for name in names:
        expect(numbers).to_contain_text(name)
    page.locator("#log-scale input").uncheck()
    page.wait_for_function("() => window.__compareDrawn.log === false")
    page.locator("#log-scale input").check()
    page.wait_for_function("() => window.__compareDrawn.log === true")
    assert joins == []
    # one cell: the second model, head 1 at block 3, the key the query attends to most
    model = data["models"][1]
    patches = GRID * GRID
    codes = np.frombuffer(base64.b64decode(model["codes"]), np.uint8).reshape(model["blocks"], model["heads"],
                                                                             patches, patches)
    loaded = zoo.load(model["model"])
    trace = analyze(loaded.model, model_input(loaded, load_image(SCENE))[0].unsqueeze(0)).trace
    assert np.abs(codes.astype(int) - attention_codes(trace)).max() <= 1
    weights = codes[3, 1, (GRID // 2) * GRID + GRID // 2]
    key = int(weights.argmax())
    side = max(max(m["grid"]) * m["cell"] for m in data["models"])
    left = 8 + max(len(n) for n in names) * 7  # (attention.js: the comparison's layout)
    cell = model["cell"]
    x = left + 2 * (side + 4) + (key % GRID) * cell + cell // 2  # (columns: the model input, then the heads)
    y = 20 + 1 * (side + 4) + (key // GRID) * cell + cell // 2
    drawn = np.array(page.evaluate("([x, y]) => Array.from(document.getElementById('compare-canvas')"
                                   ".getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3))", [x, y]))
    lut = attention_lut(True)[weights[key]].astype(float)
    assert np.abs(drawn - lut).max() <= 1, (drawn, lut)  # its weight's colour alone (issue 30)
    # the picture is beside the maps: the model input's first column
    background = np.frombuffer(base64.b64decode(model["background"]), np.uint8).reshape(GRID * cell, GRID * cell, 3)
    picture = np.array(page.evaluate("([x, y]) => Array.from(document.getElementById('compare-canvas')"
                                     ".getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3))",
                                     [left + cell // 2, 20 + 1 * (side + 4) + cell // 2]))
    assert np.abs(picture - background[cell // 2, cell // 2]).max() <= 2, (picture, background[cell // 2, cell // 2])


def _type_number(page, slider: str, value: int) -> None:
    """Type `value` into the number box of the slider `slider` (its elem_id) and press Enter, as a user does."""
    page.locator(f"#{slider} input[data-testid='number-input']").click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def _listening(page) -> list[str | None]:
    """From now on, the name of each endpoint `page` calls (None for one without a name), appended to the list
    returned."""
    names_of = {i: name for name, i in endpoint_ids(httpx.Client(timeout=30), page.url.split("?")[0]).items()}
    joins = []
    page.on("request", lambda request: joins.append(names_of.get(request.post_data_json["fn_index"]))
            if "/queue/join" in request.url else None)
    return joins


def _query_typed_is_drawn_with_no_call(page, joins: list[str | None], patch: tuple[int, int], drawn: str,
                                       view: str) -> None:
    """Type `patch` in the query box: the page's view redraws it (window.<drawn> says so), and no call of the
    server's `view` listeners joined since `joins` was last cleared."""
    row, col = patch
    box = page.locator("#query textarea, #query input").first
    box.fill(f"{row},{col}")
    box.press("Enter")
    page.wait_for_function(f"() => window.{drawn}.row === {row} && window.{drawn}.col === {col}")
    wait_for_rest(page, QUIET, REST)
    assert not [name for name in joins if name is None or view in name], joins


def _analysed_and_listening(page) -> list[str | None]:
    """Analyse the test scene in `page`, then `_listening`."""
    page.set_input_files(FILE_INPUT, str(SCENE))
    page.wait_for_function("() => window.__enlargedDrawn", timeout=SLOW)
    return _listening(page)


def test_the_gpsa_decomposition_is_computed_in_the_page_as_petl_core_computes_it(fresh_page):
    """Content vs position computes each head's content, positional and mixed attention in the page from the GPSA
    block's queries, keys and positional weights (/gpsa_data, fetched once per analysis): within 1e-4 of
    petl_core's trace for every GPSA block and head; a map cell is its weight's colour alone (never blended with the
    picture, issue 30); a new query, block or scale redraws with no server call of the view."""
    page = fresh_page
    joins = _analysed_and_listening(page)
    open_tab(page, "Content vs position")
    centre = GRID // 2
    page.wait_for_function("c => window.__gpsaDrawn && window.__gpsaDrawn.row === c && window.__gpsaDrawn.col === c",
                           arg=centre, timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    assert "gpsa_data_page" in joins and "gpsa_centres_page" in joins
    caption = page.locator("#gpsa-caption")
    expect(caption).to_contain_text(f"GPSA block 0: attention of the {Query.at(centre, centre).label} in every head")

    loaded = zoo.load(zoo.DEFAULT_MODEL)
    trace = analyze(loaded.model, model_input(loaded, load_image(SCENE))[0].unsqueeze(0)).trace
    row, col = 3, GRID - 2
    query = row * GRID + col
    assert trace.gated_blocks
    for block in trace.gated_blocks:
        for head in range(trace.attention[block].shape[1]):
            parts = page.evaluate("([b, h, r, c]) => window.__gpsaParts(b, h, r, c)", [block, head, row, col])
            assert parts["sigma"] == pytest.approx(float(trace.gates[block][head]), abs=1e-6)
            for name in ("content", "positional", "attention"):
                expected = getattr(trace, name)[block][0, head, query].numpy()
                assert np.abs(np.array(parts[name]) - expected).max() < 1e-4, (block, head, name)

    # a click on the picture redraws at once, before the server sets the query box
    picture = page.locator("#picker img").first
    picture.click(position=point_on(picture, 2.5 / GRID, 5.5 / GRID))
    page.wait_for_function("() => window.__gpsaDrawn.row === 5 && window.__gpsaDrawn.col === 2")
    assert page.evaluate("() => window.__gpsaDrawn.ms") < 1000
    expect(page.locator("#query textarea, #query input").first).to_have_value("5,2", timeout=SLOW)
    joins.clear()
    box = page.locator("#query textarea, #query input").first
    box.fill(f"{row},{col}")
    box.press("Enter")
    page.wait_for_function("([r, c]) => window.__gpsaDrawn.row === r && window.__gpsaDrawn.col === c", arg=[row, col])
    page.locator("#gpsa-block input").click()
    page.get_by_role("option", name="2", exact=True).click()
    page.wait_for_function("() => window.__gpsaDrawn.block === 2")
    expect(caption).to_contain_text(f"GPSA block 2: attention of the {Query.at(row, col).label} in every head")
    page.locator("#log-scale input").uncheck()
    page.wait_for_function("() => window.__gpsaDrawn.log === false")
    page.locator("#log-scale input").check()
    page.wait_for_function("() => window.__gpsaDrawn.log === true")
    wait_for_rest(page, QUIET, REST)
    assert not [name for name in joins if name is None or "gpsa" in name], joins
    # the content map of head 1 at the key it weighs most: that weight's colour, exactly (gpsa.js's layout)
    weights = trace.content[2][0, 1, query]
    key = int(weights.argmax())
    cell = max(3, 80 // GRID)
    left = 96 + GRID * cell + 12
    x, y = left + (GRID * cell + 4) + (key % GRID) * cell + cell // 2, 36 + (GRID * cell + 4) + (key // GRID) * cell
    drawn = np.array(page.evaluate("([x, y]) => Array.from(document.getElementById('gpsa-canvas')"
                                   ".getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3))",
                                   [x, y + cell // 2]))
    colour = attention_lut(True)[attention_codes_of(weights[key])].astype(int)
    assert np.abs(drawn - colour).max() <= 1, (drawn, colour)


def test_the_gpsa_equation_is_computed_in_the_page_and_convpass_falls_back_to_the_server(fresh_page):
    """The Equation tab computes a ConViT's equation in the page from /gpsa_data: the top keys and their content,
    positional and mixed weights are petl_core.equation's (within 1e-4); a new block, head or query redraws with no
    server call of the view. A Convpass model's equation is the server's."""
    from petl_core.equation import gpsa_equation

    page = fresh_page
    joins = _analysed_and_listening(page)
    open_tab(page, "Equation")
    page.wait_for_function("() => window.__equationDrawn", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    assert "equation_data_page" in joins and "equation_page" not in joins, joins
    # issue 30 item 3: maps large enough that the numbered keys read (three maps of at least 200 px a side)
    assert page.evaluate("() => document.getElementById('equation-canvas').width") >= 3 * 200
    expect(page.locator("#equation-server")).to_be_hidden()
    loaded = zoo.load(zoo.DEFAULT_MODEL)
    trace = analyze(loaded.model, model_input(loaded, load_image(SCENE))[0].unsqueeze(0)).trace

    def shown_numbers() -> dict:
        return json.loads(page.evaluate("() => JSON.stringify(window.__equationView(document.querySelector("
                                        "'#equation-data textarea, #equation-data input').value, document."
                                        "querySelector('#query textarea, #query input').value, document.querySelector("
                                        "'#equation-block input').value, window.__equationDrawn.head))"))

    def same_as_petl_core(numbers: dict, block: int, head: int, row: int, col: int) -> None:
        eq = gpsa_equation(trace, block, head, Query.at(row, col))
        assert (numbers["block"], numbers["head"], numbers["query"]) == (block, head, f"{row},{col}")
        assert numbers["sigma"] == pytest.approx(eq.sigma, abs=1e-6)
        assert [k["patch"] for k in numbers["top"]] == [list(k.patch) for k in eq.top]
        for shown, expected in zip([*numbers["top"], numbers["rest"]], [*eq.top, eq.rest], strict=True):
            for name in ("content", "positional", "attention"):
                assert shown[name] == pytest.approx(getattr(expected, name), abs=1e-4), (name, shown, expected)
        text = page.locator("#equation-page-text")
        expect(text).to_contain_text(f"GPSA block {block}, head {head}, {Query.at(row, col).label}.")
        expect(text).to_contain_text(f"σ = σ(λ) = {eq.sigma:.4f}")

    centre = GRID // 2
    same_as_petl_core(shown_numbers(), 0, 0, centre, centre)
    picture = page.locator("#picker img").first  # a click redraws at once; the numbers follow the query box
    picture.click(position=point_on(picture, 2.5 / GRID, 5.5 / GRID))
    page.wait_for_function("() => window.__equationDrawn.row === 5 && window.__equationDrawn.col === 2")
    assert page.evaluate("() => window.__equationDrawn.ms") < 1000
    expect(page.locator("#query textarea, #query input").first).to_have_value("5,2", timeout=SLOW)
    joins.clear()
    _type_number(page, "equation-head", 4)
    page.wait_for_function("() => window.__equationDrawn.head === 4")
    page.locator("#equation-block input").click()
    page.get_by_role("option", name="3", exact=True).click()
    page.wait_for_function("() => window.__equationDrawn.block === 3")
    _query_typed_is_drawn_with_no_call(page, joins, (2, 9), "__equationDrawn", "equation")
    same_as_petl_core(shown_numbers(), 3, 4, 2, 9)
    page.get_by_text("Numbers", exact=True).last.click()  # (the page's numbers panel, folded away)
    expect(page.locator("#equation-page-numbers")).to_contain_text("in the page, from /gpsa_data")

    page.locator("#model input").click()  # a Convpass model: the server's equation
    page.get_by_role("option", name=re.compile(r"^convpass_digit_scenes")).click()
    expect(page.locator("#equation-text")).to_contain_text("Convpass block", timeout=SLOW)
    expect(page.locator("#equation-server")).to_be_visible()
    expect(page.locator("#equation-page")).to_be_hidden()
    # issue 30 item 3: the table has the page's width, and no number breaks across lines ("= 0.2 / 808")
    cells = page.evaluate("""() => [...document.querySelectorAll('#equation-text td')].map((td) => {
        const style = getComputedStyle(td), range = document.createRange();
        range.selectNodeContents(td);  // (the text's own lines, whatever the row's height)
        const line = parseFloat(style.lineHeight) || 1.5 * parseFloat(style.fontSize);
        return [td.innerText, range.getBoundingClientRect().height / line];
    })""")
    numeric = [(text, lines) for text, lines in cells if re.search(r"\d\.\d{4}", text)]
    assert numeric and all(lines < 1.5 for _, lines in numeric), numeric
    width = page.evaluate("() => document.querySelector('#equation-text table').getBoundingClientRect().width")
    assert width > 0.6 * page.evaluate("() => document.querySelector('#equation-server').getBoundingClientRect().width")


def test_the_training_replay_grids_are_drawn_in_the_page_for_any_query(fresh_page):
    """Training: the server sends each snapshot's attention once per step (replay_page); the page draws both models'
    grids from it (the snapshot's own attention, as petl_core traces it) and redraws them for a new query or scale
    with no server call; a new step asks the server again."""
    from app.service import Service

    page = fresh_page
    joins = _analysed_and_listening(page)
    open_tab(page, "Training")
    page.wait_for_function("() => window.__replayDrawn && window.__replayDrawn.convit && window.__replayDrawn.deit",
                           timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    drawn = page.evaluate("() => window.__replayDrawn")
    pair = {side: drawn[side]["model"] for side in ("convit", "deit")}
    last = zoo.snapshot_steps(pair["convit"])[-1]
    assert drawn["convit"]["step"] == last and "replay_page" in joins
    expect(page.locator("#replay-convit-caption")).to_contain_text(f"{pair['convit']} at step {last}: attention of "
                                                                  f"the {Query.at(GRID // 2, GRID // 2).label}")
    data = json.loads(page.locator("#replay-convit-data textarea, #replay-convit-data input").first.input_value())
    patches = GRID * GRID
    codes = np.frombuffer(base64.b64decode(data["codes"]), np.uint8).reshape(data["blocks"], data["heads"], patches,
                                                                            patches)
    snapshot = Service("cpu").snapshot_result(str(SCENE), pair["convit"], last)
    assert np.abs(codes.astype(int) - attention_codes(snapshot.trace)).max() <= 1

    joins.clear()
    box = page.locator("#query textarea, #query input").first
    box.fill("2,9")
    box.press("Enter")
    page.wait_for_function("() => window.__replayDrawn.convit.row === 2 && window.__replayDrawn.deit.col === 9")
    page.locator("#log-scale input").uncheck()
    page.wait_for_function("() => window.__replayDrawn.log === false")
    wait_for_rest(page, QUIET, REST)
    assert not [name for name in joins if name is None or "replay" in name], joins
    expect(page.locator("#replay-deit-caption")).to_contain_text(f"attention of the {Query.at(2, 9).label}")
    page.locator("#replay-step input").click()
    page.get_by_role("option", name="0", exact=True).click()
    page.wait_for_function("() => window.__replayDrawn.convit.step === 0 && window.__replayDrawn.convit.row === 2",
                           timeout=SLOW)
    assert "replay_page" in joins
    page.locator("#log-scale input").check()


def test_the_dial_scores_the_probe_in_the_page_progressively_as_petl_core_does(fresh_page):
    """The shipped ConViT's dial graphs run in the page (onnxruntime-web, WASM): a setting's probe accuracy shows
    first as an estimate from the first images, then exact, equal to petl_core.dial's over the same 256 images; a
    newer setting cancels the older one's scoring; the server draws the maps and scores nothing (issue 29)."""
    page = fresh_page
    joins = _analysed_and_listening(page)
    open_tab(page, "Dial")
    loaded = zoo.load(zoo.DEFAULT_MODEL)
    scorer = DialProbe(loaded.model, probe_set(loaded.card.recipe["data"]), loaded.card.preprocessing)
    heads = loaded.model.blocks[0].attn.num_heads
    older, newer = [[0.0] * heads, None, None, None], [None, None, [0.0] * heads, None]
    box = page.locator("#dial-gates textarea")
    # a preset sets the gates; "by hand" starts from the model as trained (issue 30: it applied σ = 0 to block 0)
    page.get_by_label("all content (σ = 0): a ViT").check()
    expect(box).to_have_value(json.dumps([[0.0] * heads] * 4), timeout=SLOW)
    page.get_by_label("by hand, below").check()
    expect(box).to_have_value("", timeout=SLOW)
    page.wait_for_timeout(1000)
    expect(box).to_have_value("")
    box.fill(json.dumps(older))
    box.fill(json.dumps(newer))
    page.wait_for_function("g => (window.__dialPage.state.shown || {}).gates === g "
                           "&& window.__dialPage.state.shown.seen === 256", arg=json.dumps(newer), timeout=SLOW)
    reports = page.evaluate("() => window.__dialPage.state.reports")
    mine = [r for r in reports if r["gates"] == json.dumps(newer)]
    assert [r["seen"] for r in mine][0] < 256 and mine[-1]["correct"] / 256 == scorer.accuracy(newer)
    assert all(r["seen"] < 256 for r in reports if r["gates"] == json.dumps(older))  # cancelled
    expect(page.locator("#dial-page-score")).to_contain_text(
        f"{100 * scorer.accuracy(newer):.1f}% on the first 256 test images of its task (scored in this browser)")
    # the maps are the server's (the /dial listener), its sentence without a score of its own
    expect(page.locator("#dial-note")).to_contain_text("Prediction with these gates", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    assert "dial_page" in joins
    assert "Probe accuracy" not in page.locator("#dial-note").text_content()
    # the grid: drawn in the page from the dialled pass's attention (as petl_core traces it with these gates), and
    # redrawn for a new query with no server call
    from app.service import Service

    centre = GRID // 2
    page.wait_for_function("c => (window.__dialDrawn || {}).row === c", arg=centre, timeout=SLOW)
    expect(page.locator("#dial-caption")).to_contain_text(
        f"{zoo.DEFAULT_MODEL} with the gates as set: attention of the {Query.at(centre, centre).label}")
    data = json.loads(page.locator("#dial-data textarea, #dial-data input").first.input_value())
    patches = GRID * GRID
    codes = np.frombuffer(base64.b64decode(data["codes"]), np.uint8).reshape(data["blocks"], data["heads"], patches,
                                                                            patches)
    dialled = Service("cpu").dial(str(SCENE), zoo.DEFAULT_MODEL, json.dumps(newer), score=False)
    assert np.abs(codes.astype(int) - attention_codes(dialled.analysis.trace)).max() <= 1
    assert np.abs(codes.astype(int) - attention_codes(dialled.trained.trace)).max() > 1  # (the gates count)
    joins.clear()
    _query_typed_is_drawn_with_no_call(page, joins, (3, 4), "__dialDrawn", "dial")
    # the cancelled setting again: scored in full this time
    box.fill(json.dumps(older))
    page.wait_for_function("g => (window.__dialPage.state.shown || {}).gates === g "
                           "&& window.__dialPage.state.shown.seen === 256", arg=json.dumps(older), timeout=SLOW)
    assert page.evaluate("() => window.__dialPage.state.shown.correct") / 256 == scorer.accuracy(older)
    assert page.evaluate("() => window.__dialPage.state.workers") >= 1


def test_where_the_page_cannot_score_the_dial_it_says_so_and_the_server_scores_it(browser, app_server: str):
    """The in-page path switched off by its runtime failing to load (its files refused): the page says so in one
    sentence, and from the next change on the server scores the probe, as for any model without graphs (issue 29:
    the server is the fallback)."""
    refused = "**/explorer/runtime/**"
    browser.route(refused, lambda route: route.abort())
    page = _open(browser, app_server)
    try:
        _analysed_and_listening(page)
        open_tab(page, "Dial")
        loaded = zoo.load(zoo.DEFAULT_MODEL)
        scorer = DialProbe(loaded.model, probe_set(loaded.card.recipe["data"]), loaded.card.preprocessing)
        heads = loaded.model.blocks[0].attn.num_heads
        box = page.locator("#dial-gates textarea")
        page.get_by_label("all content (σ = 0): a ViT").check()
        expect(box).to_have_value(json.dumps([[0.0] * heads] * 4), timeout=SLOW)
        expect(page.locator("#dial-page-score")).to_contain_text(
            "This browser could not score the probe", timeout=SLOW)
        later = [None, [1.0] * heads, None, None]
        box.fill(json.dumps(later))
        expect(page.locator("#dial-note")).to_contain_text(
            f"Probe accuracy with these gates: {scorer.accuracy(later):.1%} on the first 256 test images",
            timeout=SLOW)
    finally:
        browser.unroute(refused)
        page.close()


def test_a_file_that_is_not_an_image_is_refused_and_the_page_recovers(fresh_page, tmp_path):
    page = fresh_page
    fake = tmp_path / "notes.png"
    fake.write_text("These are notes, not a picture.\n" * 20)
    page.set_input_files(FILE_INPUT, str(fake))
    toast = page.locator("[data-testid='toast-body']")
    expect(toast.first).to_be_visible(timeout=SLOW)
    expect(toast.first).to_contain_text("not an image")
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_count(0)

    page.set_input_files(FILE_INPUT, str(CHELSEA))
    assert _top5(page) == _top1(CHELSEA)
    assert _image_src(page, "picker")
    page.wait_for_function("() => window.__enlargedDrawn", timeout=SLOW)


def _expected_numbers(step: int) -> list[str]:
    """Numbers guide step `step` must show, computed here from the shipped files and weights (not by the app)."""
    view = STEPS[step - 1].view
    card = zoo.ModelCard.load(zoo.ASSETS / view.model)
    if step == 1:
        return [f"{card.accuracy['test']:.1%}", f"{card.architecture['kwargs']['img_size']}×"]
    if step == 2:
        model = zoo.load(view.model).model
        gates = [b.attn.gating_param.detach().sigmoid() for b in model.blocks if hasattr(b.attn, "gating_param")]
        return [f"block {i}: {g.min():.2f}-{g.max():.2f}" for i, g in enumerate(gates)]
    if step == 3:  # the most positional head still takes 1 - σ from the content (issue 30: "ignores it entirely")
        model = zoo.load(view.model).model
        gates = torch.stack([b.attn.gating_param.detach().sigmoid() for b in model.blocks
                             if hasattr(b.attn, "gating_param")])
        top = float(gates.max())
        return [f"has σ = {top:.3f}: it takes {1 - top:.1%} of every weight from the content"]
    if step == 4:  # the two accuracies reconciled
        return [f"{card.accuracy['test']:.1%} on its {card.accuracy['test_images']:,} test scenes",
                "the dial scores the first 256 of them"]
    if step == 6:
        curves = TrainingCurves.of(zoo.read_history(view.model))
        return [f"from {curves.nonlocality[0][0]:.2f} to {curves.nonlocality[-1][0]:.2f} patches"]
    if step == 8:
        trainable, total = card.parameters["trainable"], card.parameters["total"]
        return [f"{trainable:,} of {total:,}", f"({trainable / total:.1%})"]
    return []


def test_the_guided_path_walks_every_step(fresh_page):
    """Next, step by step: each step opens its tab, model and example, and says what to notice with the numbers of
    the shipped models; the address bar then links to the step's view."""
    page = fresh_page
    text, model = page.locator("#guide-text"), page.locator("#model input")
    for step, guide in enumerate(STEPS, 1):
        page.locator("#guide-next").click()
        expect(text).to_contain_text(f"Step {step} of {len(STEPS)}: {guide.title}.", timeout=SLOW)
        for number in _expected_numbers(step):
            expect(text).to_contain_text(number)
        # issue 30 item 19: what to conclude, and a question for a class
        expect(text).to_contain_text("Conclude.")
        expect(text).to_contain_text(f"Discuss. {guide.question}")
        # issue 30 item 18: the step's text right above its view, both scrolled into sight
        near = page.locator("#guide-near")
        expect(near).to_contain_text(f"Step {step} of {len(STEPS)}: {guide.title}.")
        page.wait_for_function("() => { const r = document.getElementById('guide-near').getBoundingClientRect(); "
                               "return r.top >= -2 && r.top < innerHeight / 2; }", timeout=SLOW)
        expect(page.locator(f"#tab-{guide.view.tab}")).to_be_visible()
        expect(model).to_have_value(re.compile(f"^{re.escape(guide.view.model)} "))
        link = re.escape(f"model={guide.view.model}") + ".*" + re.escape(f"tab={guide.view.tab}")
        expect(page).to_have_url(re.compile(link), timeout=SLOW)
        if guide.view.example:
            expect(page).to_have_url(re.compile(re.escape(f"example={guide.view.example}")), timeout=SLOW)
            # the step's example is analysed by the step's model (the server set both: see Shared.sets)
            top1 = _top1(Path(example_path(guide.view.example)), guide.view.model)
            expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_text(top1, timeout=SLOW)
    page.locator("#guide-back").click()
    expect(text).to_contain_text(f"Step {len(STEPS) - 1} of {len(STEPS)}", timeout=SLOW)


def test_a_page_opened_from_a_link_comes_to_rest(browser, app_server: str):
    """The link sets the model, image and query at once; every view draws, and then the page stops calling the
    server (Gradio 6.31 re-sent the change events of such pages for ever: see app.tabs.common.EACH_CHANGE and
    Shared.changes)."""
    page = browser.new_page()
    try:
        page.goto(f"{app_server}?model=convit_scenes&example=scene_dress.png&tab=gpsa&block=2&query=3,4")
        expect(page.locator("#query textarea, #query input").first).to_have_value("3,4", timeout=SLOW)
        wait_for_rest(page, QUIET, REST)
    finally:
        page.close()


def test_an_example_picked_in_the_gallery_is_analysed(fresh_page):
    """A click on an example of the gallery (set by the server, so not the image's upload event) analyses it, and
    the page comes to rest."""
    page = fresh_page
    examples = task_examples(zoo.load(zoo.DEFAULT_MODEL), EXAMPLES)  # in the gallery's order
    page.locator("#examples .thumbnail-item").nth(len(examples) - 1).click()  # (one the model gets wrong)
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_text(_top1(examples[-1].path),
                                                                                 timeout=SLOW)
    wait_for_rest(page, QUIET, REST)


def test_a_shared_link_opens_its_view_and_the_address_follows(browser, app_server: str, artefacts: Path):
    """A teacher's link sets the model, example, tab, block and query; a part the app does not offer is dropped
    with a warning; changing the view rewrites the address, and that address opens the same view."""
    scene = "scene_dress.png"
    page = browser.new_page()
    try:
        page.goto(f"{app_server}?model=convit_scenes&example={scene}&tab=gpsa&block=2&query=3,4&head=../../etc")
        expect(page.locator("[data-testid='toast-body']").first).to_contain_text("head '../../etc'", timeout=SLOW)
        expect(page.locator("#tab-gpsa")).to_be_visible()
        expect(page.locator("#model input")).to_have_value(re.compile("^convit_scenes "))
        expect(page.locator("#query textarea, #query input").first).to_have_value("3,4")
        assert _top5(page) == _top1(ROOT / "assets" / "examples" / scene, "convit_scenes")
        block = page.locator("#gpsa-block input")
        expect(block).to_have_value("2")
        expect(page).to_have_url(re.compile(r"model=convit_scenes&example=scene_dress\.png&tab=gpsa&block=2&"
                                            r"query=3%2C4$"), timeout=SLOW)
        wait_for_rest(page, QUIET, REST)
        block.click()
        page.get_by_role("option", name="1", exact=True).click()
        expect(page).to_have_url(re.compile(r"tab=gpsa&block=1&"), timeout=SLOW)
        link = page.locator("#view-link textarea, #view-link input").first
        expect(link).to_have_value(page.url)
        shared_url = page.url
    finally:
        _screenshot(page, artefacts, "shared_link")
        page.close()
    again = browser.new_page()
    try:
        again.goto(shared_url)
        expect(again.locator("#tab-gpsa")).to_be_visible(timeout=SLOW)
        expect(again.locator("#gpsa-block input")).to_have_value("1", timeout=SLOW)
        expect(again.locator("#query textarea, #query input").first).to_have_value("3,4", timeout=SLOW)
    finally:
        again.close()
