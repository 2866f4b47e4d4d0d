"""The page without its in-page path (`app.py --server-drawn`, as for a browser that cannot draw the views itself),
in a real browser (Debian's headless Chromium through Playwright): the server draws the attention tab's grid and
enlarged map for each analysis, click and hidden-tab change, and the page works as with the in-page path."""
from __future__ import annotations

from pathlib import Path

import pytest
from browser_support import expect  # (skips the module without Chromium or Playwright)

from petl_core import zoo
from petl_core.query import Query
from scripts.app_server import start_app, stop_app
from scripts.browser_page import FILE_INPUT, chromium_context, open_tab, point_on, wait_for_rest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCENE = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]
_ARCH = zoo.ModelCard.load(zoo.ASSETS / zoo.DEFAULT_MODEL).architecture["kwargs"]
GRID = _ARCH["img_size"] // _ARCH["patch_size"]
SLOW = 60_000  # ms
QUIET, REST = 5_000, 180_000  # ms: a page at rest makes no server call for QUIET; it must come to rest within REST


@pytest.fixture(scope="module")
def server_drawn(tmp_path_factory: pytest.TempPathFactory) -> str:
    process, url = start_app(tmp_path_factory.mktemp("server_drawn"), 180,
                             forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1", "EXPLORER_SERVER_DRAWN": "1"})
    yield url
    stop_app(process)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, server_drawn: str):
    with chromium_context(tmp_path_factory.mktemp("chromium"), SLOW) as context:
        page = context.new_page()
        page.goto(server_drawn)
        page.wait_for_selector(FILE_INPUT, state="attached")
        yield page


def _image_src(page, elem_id: str, before: str | None = None) -> str:
    """The src of the <img> of `elem_id` once loaded (and other than `before`, if given)."""
    page.wait_for_function("([id, before]) => { const i = document.querySelector(`#${id} img`); "
                           "return i && i.getAttribute('src') !== before && i.complete && i.naturalWidth > 0; }",
                           arg=[elem_id, before], timeout=SLOW)
    return page.locator(f"#{elem_id} img").first.get_attribute("src")


def test_the_server_draws_the_grid_and_the_enlarged_map_for_each_click(page):
    page.set_input_files(FILE_INPUT, str(SCENE))
    grid_before = _image_src(page, "attention-grid")
    enlarged = page.locator("#attention-enlarged .js-plotly-plot")
    expect(enlarged).to_contain_text(f"attention of the {Query.at(GRID // 2, GRID // 2).label}", timeout=SLOW)
    expect(page.locator("#enlarged-canvas")).to_have_count(0)  # (no in-page map)
    fx, fy = 0.3, 0.7
    row, col = int(fy * GRID), int(fx * GRID)
    picture = page.locator("#picker img").first
    picture.click(position=point_on(picture, fx, fy))
    expect(page.locator("#query textarea, #query input").first).to_have_value(f"{row},{col}", timeout=SLOW)
    assert _image_src(page, "attention-grid", grid_before)
    expect(enlarged).to_contain_text(f"attention of the {Query.at(row, col).label}", timeout=SLOW)
    expect(enlarged.locator(".heatmaplayer, .hm, image").first).to_be_attached()
    # the hover grid is drawn in the page here too (it needs no more than any browser has)
    page.wait_for_function("([r, c]) => window.__hoverDrawn && window.__hoverDrawn.row === r && "
                           "window.__hoverDrawn.col === c", arg=[row, col], timeout=SLOW)


def test_only_the_tab_shown_draws_and_an_opened_tab_draws_what_changed(page):
    """The views of hidden tabs do not draw (the page spends the server's time on the view in sight); opening a
    tab draws what changed while it was hidden."""
    wait_for_rest(page, QUIET, REST)
    expect(page.locator("#gpsa-centres .js-plotly-plot")).to_have_count(0)  # its tab was never shown
    open_tab(page, "Content vs position")
    expect(page.locator("#gpsa-centres .js-plotly-plot svg.main-svg").first).to_be_attached(timeout=SLOW)
    query = page.locator("#query textarea, #query input").first
    before = Query.at(*map(int, query.input_value().split(",")))  # (the patch the first test clicked)
    query.fill("1,2")
    query.press("Enter")
    wait_for_rest(page, QUIET, REST)
    enlarged = page.locator("#attention-enlarged .js-plotly-plot")
    expect(enlarged).to_contain_text(f"attention of the {before.label}")  # hidden: not drawn again
    open_tab(page, "Attention")
    expect(enlarged).to_contain_text(f"attention of the {Query.at(1, 2).label}", timeout=SLOW)


def test_compare_is_the_servers_figure(page):
    open_tab(page, "Compare")
    page.locator("#compare-run").click()
    assert _image_src(page, "compare-plot")
    expect(page.locator("#compare-canvas")).to_have_count(0)
