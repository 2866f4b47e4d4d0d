"""Interaction defects a newcomer met (issue 13), each in a real browser (Debian's headless Chromium through
Playwright): Enter in a slider's number box redraws, an export list goes when the view's inputs change, a bad upload
breaks no later event. One browser for the module, as in test_browser.py."""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest
from browser_support import expect  # (skips the module without Chromium or Playwright)

from app.guide import STEPS
from scripts.app_server import endpoint_ids
from scripts.browser_page import (
    FILE_INPUT,
    chromium_context,
    open_tab,
    point_on,
    record_toasts,
    toasts_shown,
    wait_for_rest,
    wait_until_idle,
)

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCENE = sorted((ROOT / "assets" / "examples").glob("scene_*.png"))[0]
SLOW = 60_000  # ms: the machine may be busy; the first analysis loads and traces the model
QUIET, REST = 5_000, 180_000  # ms: a page at rest makes no server call for QUIET; it must come to rest within REST


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """A persistent Chromium context whose profile, config and cache all live in a temp folder."""
    with chromium_context(tmp_path_factory.mktemp("chromium"), SLOW) as context:
        yield context


@pytest.fixture
def page(browser, app_server: str):
    """A page of its own, with `SCENE` analysed."""
    page = browser.new_page()
    page.goto(app_server)
    page.wait_for_selector(FILE_INPUT, state="attached")
    page.set_input_files(FILE_INPUT, str(SCENE))
    expect(page.locator("#attention-enlarged")).to_contain_text("block 0, head 0", timeout=SLOW)
    yield page
    page.close()


def test_a_query_set_while_the_image_is_analysed_stays_and_the_page_comes_to_rest(browser, app_server: str):
    """Class token pressed while an upload is analysed: the query stays 'cls' (the analysis does not send back the
    query it read, which made Gradio's Textbox flip between the two values for ever, each flip redrawing every
    view) and the page stops calling the server (no listener is "always_last": see app.tabs.common.EACH_CHANGE)."""
    page = browser.new_page()
    try:
        page.goto(app_server)
        page.wait_for_selector(FILE_INPUT, state="attached")
        page.set_input_files(FILE_INPUT, str(SCENE))
        page.get_by_role("button", name="Class token").click()
        # (the default ConViT's first blocks are GPSA blocks, which have no class token to query)
        expect(page.locator("#attention-enlarged")).to_contain_text("no class token", timeout=SLOW)
        wait_for_rest(page, QUIET, REST)
        expect(page.locator("#query textarea, #query input").first).to_have_value("cls")
    finally:
        page.close()


def test_enter_in_a_slider_number_box_redraws(page):
    """Typing a block and pressing Enter redraws the enlarged map (Gradio sends `release` only on blur)."""
    wait_until_idle(page, SLOW)  # the views an analysis redraws
    box = page.locator("#layer input[data-testid='number-input']")
    box.click()  # as a person types: select the number, type another, press Enter
    page.keyboard.press("Control+A")
    page.keyboard.type("2")
    page.keyboard.press("Enter")
    expect(page.locator("#attention-enlarged")).to_contain_text("block 2, head 0", timeout=SLOW)


def test_the_export_list_goes_when_the_model_changes(page):
    """Files exported for one model would pass for another's: a model switch takes the list away."""
    page.get_by_role("button", name="Export view (PNG, HTML, JSON, NPZ)").first.click()
    files = page.locator("#attention-files")
    expect(files.locator('a[href$="/attention.json"]')).to_have_count(1, timeout=SLOW)
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(r"^convpass_digits")).click()
    expect(files).to_be_hidden(timeout=SLOW)


def test_a_bad_upload_breaks_no_later_event(browser, app_server: str, tmp_path: Path):
    """A file that is not an image is the analysis's to refuse: the page's other events (the link to the view, at
    every tab switch) answer without a server error."""
    fake = tmp_path / "notes.png"
    fake.write_text("These are notes, not a picture.\n" * 20)
    page = browser.new_page()
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    try:
        page.goto(app_server)
        page.wait_for_selector(FILE_INPUT, state="attached")
        page.set_input_files(FILE_INPUT, str(fake))
        expect(page.locator("#top5")).to_contain_text("Error", timeout=SLOW)
        for tab in ("Gates", "Attention"):
            open_tab(page, tab)
        time.sleep(2)
        assert failed == []
    finally:
        page.close()


@pytest.mark.parametrize("opened_by", ["link", "guide"])
def test_a_bad_upload_after_a_link_or_a_guide_step_set_the_image_is_said(browser, app_server: str, tmp_path: Path,
                                                                         opened_by: str):
    """The server setting the image (a shared link's example, a guide step's) leaves the image's errors to show:
    a file that is not an image, uploaded next, gets its toast (an event that outputs to the image at page load
    used to swallow them)."""
    fake = tmp_path / "notes.png"
    fake.write_text("These are notes, not a picture.\n" * 20)
    step = next(i for i, s in enumerate(STEPS, 1) if s.view.example)
    page = browser.new_page()
    try:
        if opened_by == "link":
            view = STEPS[step - 1].view
            page.goto(f"{app_server}?model={view.model}&example={view.example}")
        else:
            page.goto(app_server)
            page.locator("#guide-step label").nth(step - 1).click()
        expect(page).to_have_url(re.compile(re.escape(f"example={STEPS[step - 1].view.example}")), timeout=SLOW)
        expect(page.locator("#top5 [data-testid='label-output-value']")).not_to_have_text("", timeout=SLOW)
        wait_for_rest(page, QUIET, REST)
        record_toasts(page)
        page.set_input_files(FILE_INPUT, str(fake))
        expect(page.locator("[data-testid='toast-body']").first).to_contain_text("not an image", timeout=SLOW)
        assert any("not an image" in t for t in toasts_shown(page))
    finally:
        page.close()


def test_a_query_off_the_grid_is_refused_once_and_the_views_stay(page):
    """A query typed into the box that the patch grid has no patch for: one toast says so (not one per view), and
    the maps of the last good query stay, with no error badge over them."""
    wait_for_rest(page, QUIET, REST)
    enlarged = page.locator("#attention-enlarged")
    before = enlarged.inner_text()
    box = page.locator("#query textarea, #query input").first
    record_toasts(page)
    box.fill("99,99")
    box.press("Enter")
    toast = page.locator("[data-testid='toast-body']")
    expect(toast.first).to_contain_text("Patch (99, 99) is outside", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    shown = toasts_shown(page)
    assert len(shown) == 1 and shown[0].count("is outside") == 1, shown
    assert enlarged.inner_text() == before
    expect(page.locator(".error")).to_have_count(0)


def test_an_unavailable_hub_model_is_said_once_and_keeps_the_results(page):
    """Offline, choosing a hub model (no weights file given) says once that it needs the hub, and the results of
    the last model stay instead of turning into error badges."""
    top1 = page.locator("#top5 [data-testid='label-output-value']").inner_text()
    page.locator("#model input").click()
    option = page.get_by_role("option", name=re.compile(r"\(hub weights unreachable: give your own file\)")).first
    if not option.count():
        pytest.skip("the hub is reachable from here")
    record_toasts(page)
    option.click()
    toast = page.locator("[data-testid='toast-body']")
    expect(toast.first).to_contain_text("needs its weights from the Hugging Face hub", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    shown = toasts_shown(page)
    assert sum(t.count("needs its weights") for t in shown) == 1, shown
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_text(top1)
    expect(page.locator(".error")).to_have_count(0)


def test_a_model_chosen_right_after_a_click_off_its_grid_moves_the_query_to_the_centre(page):
    """A patch of the 12×12 grid clicked, then at once a model with an 8×8 grid: no view complains that the patch is
    outside the new grid (the page moves the query to the centre patch instead) and the page comes to rest."""
    wait_for_rest(page, QUIET, REST)
    picture = page.locator("#picker img").first
    picture.click(position=point_on(picture, 0.95, 0.95))  # the last patch of the 12×12 grid
    query = page.locator("#query textarea, #query input").first
    expect(query).to_have_value("11,11", timeout=SLOW)
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(r"^convit_fmnist ")).click()
    expect(query).to_have_value("center", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    expect(query).to_have_value("center")
    assert page.locator("[data-testid='toast-body']").all_inner_texts() == []


def test_the_last_of_quick_clicks_on_patches_is_the_query(page):
    """Issue 30 item 17: patches clicked 250-400 ms apart ended on an earlier patch, or a click was dropped. The
    query is the patch clicked last, and the page comes to rest on it."""
    wait_for_rest(page, QUIET, REST)
    picture = page.locator("#picker img").first
    for fx, fy in ((0.1, 0.1), (0.5, 0.3), (0.3, 0.7), (0.9, 0.1)):  # the last: row 1, col 10 of the 12×12 grid
        picture.click(position=point_on(picture, fx, fy))
        page.wait_for_timeout(250)
    query = page.locator("#query textarea, #query input").first
    expect(query).to_have_value("1,10", timeout=SLOW)
    wait_for_rest(page, QUIET, REST)
    expect(query).to_have_value("1,10")


def test_no_console_error_on_a_walk_through_every_tab(browser, app_server: str):
    """An upload, a click on a patch, every tab opened and a gallery example analysed: the page logs no error (a
    newcomer once met `Unexpected token 'd', "data:image"... is not valid JSON` in the console)."""
    page = browser.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)[:300]))
    try:
        page.goto(app_server)
        page.wait_for_selector(FILE_INPUT, state="attached")
        page.set_input_files(FILE_INPUT, str(SCENE))
        expect(page.locator("#attention-enlarged")).to_contain_text("block 0, head 0", timeout=SLOW)
        picture = page.locator("#picker img").first
        picture.click(position=point_on(picture, 0.3, 0.6))
        wait_for_rest(page, QUIET, REST)
        tabs = page.locator("#views [role=tab]")
        names = [tabs.nth(i).inner_text().strip() for i in range(tabs.count())]
        assert len(names) >= 10, names
        for name in names[1:]:
            open_tab(page, name)
            wait_for_rest(page, QUIET, REST)
        page.locator("#examples img").first.click()
        wait_for_rest(page, QUIET, REST)
        assert errors == []
    finally:
        page.close()


def test_the_sketchpad_draws_at_once_and_its_sketch_is_analysed(browser, app_server: str):
    """Opening the sketch pad picks its brush (Gradio's pad starts with no tool and asks for one), so the first drag
    draws; "Use this sketch" then analyses the drawing."""
    page = browser.new_page()
    page.goto(app_server)
    page.locator("#model input").wait_for()
    page.get_by_text("…or draw a sketch").click()
    brush = page.locator('#sketch button[aria-label="Brush"]')
    expect(brush).to_be_visible(timeout=SLOW)
    expect(page.locator("#sketch")).not_to_contain_text("select the draw tool", timeout=SLOW)
    canvas = page.locator("#sketch canvas").first
    canvas.scroll_into_view_if_needed()  # (the pad opens below the fold, as for a user, who scrolls to it)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    for step in range(1, 11):  # a stroke down the middle
        page.mouse.move(box["x"] + box["width"] * (0.3 + 0.02 * step), box["y"] + box["height"] * (0.2 + 0.06 * step))
    page.mouse.up()
    expect(page.locator("#sketch button[aria-label='Undo']")).to_be_enabled(timeout=SLOW)  # (a stroke was drawn)
    page.get_by_role("button", name="Use this sketch").click()
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_count(1, timeout=SLOW)
    page.close()


def test_a_model_picked_with_the_pointer_is_analysed_once(page, app_server: str):
    """Gradio 6.31's Dropdown sends `input` when an option is clicked and again on the blur after it, and on any
    blur: the page's views redraw once for a pick (the repeated analysis changes nothing: app.tabs.common.Repeats),
    and not at all when the model list is only opened and left."""
    ids = endpoint_ids(httpx.Client(timeout=30), app_server)
    joins: list[int] = []
    page.on("request", lambda r: joins.append(r.post_data_json["fn_index"]) if "/queue/join" in r.url else None)
    wait_for_rest(page, QUIET, REST)

    def redraws_of_the_attention_view() -> int:  # (the page draws the tab from the data it fetches once)
        wait_for_rest(page, QUIET, REST)
        count = joins.count(ids["hover_page"])
        joins.clear()
        return count

    joins.clear()
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(r"^deit_scenes ")).click()
    hover_data_of(page, "deit_scenes")
    assert ids["_analyze_if_image"] in joins  # (sent twice by the page; analysed once)
    assert redraws_of_the_attention_view() == 1
    page.locator("#model input").click()
    page.keyboard.press("Escape")
    page.locator("#top5").click()
    assert redraws_of_the_attention_view() == 0
    box = page.locator("#model input")  # a pick with the keyboard (one `input`, on the blur after Enter)
    box.click()
    box.fill("convit_fmnist")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    hover_data_of(page, "convit_fmnist")
    assert redraws_of_the_attention_view() == 1


def hover_data_of(page, model: str) -> None:
    """Wait until the page holds the attention of `model` for hovering (the attention view drew its analysis)."""
    page.wait_for_function("model => (document.querySelector('#hover-data textarea, #hover-data input') || "
                           "{value: ''}).value.includes(`\"model\": \"${model}\"`)", arg=model, timeout=SLOW)


def test_every_example_and_its_whole_caption_is_in_sight(browser, app_server: str):
    """Issue 30 item 14: the examples row ran off to the side with no scrollbar in sight, so the two the model gets
    wrong (the most instructive) were off-screen and captions were cut ("Pullover (…"). Every example lies within
    the gallery's visible box, and no caption is cut."""
    page = browser.new_page()
    try:
        page.goto(app_server)
        items = page.locator("#examples .thumbnail-item")
        expect(items).to_have_count(6, timeout=SLOW)
        expect(page.locator("#examples")).to_contain_text(" ✗ ", timeout=SLOW)  # (the wrong ones' captions)
        page.wait_for_timeout(500)  # (thumbnails laid out)
        boxes = page.evaluate("""() => {
            const gallery = document.querySelector('#examples');
            const seen = gallery.querySelector('.grid-wrap') || gallery;
            const frame = seen.getBoundingClientRect();
            return [...gallery.querySelectorAll('.thumbnail-item')].map((item) => {
                const box = item.getBoundingClientRect(), caption = item.querySelector('.caption-label, figcaption');
                return {inside: box.left >= frame.left - 1 && box.right <= frame.right + 1 && box.top >= frame.top - 1
                                && box.bottom <= frame.bottom + 1,
                        caption: caption ? caption.innerText : null,
                        cut: caption ? caption.scrollWidth > caption.clientWidth + 1 : null};
            });
        }""")
        assert all(b["inside"] for b in boxes), boxes
        assert all(b["caption"] and not b["cut"] for b in boxes), boxes
    finally:
        page.close()


def test_the_line_and_the_examples_follow_a_model_a_guide_step_sets(browser, app_server: str):
    """Issue 30 item 16: after a guide step changes the model, the line under the model and the examples describe
    the new model (they kept describing the last one)."""
    page = browser.new_page()
    try:
        page.goto(app_server)
        line, gallery = page.locator("#model-input"), page.locator("#examples")
        for step in (len(STEPS), 2):  # the Convpass step (a digits model), then back to a clothes one
            page.locator("#guide-step label").nth(step - 1).click()
            model = STEPS[step - 1].view.model
            expect(page.locator("#model input")).to_have_value(re.compile(f"^{re.escape(model)} "), timeout=SLOW)
            expect(line).to_contain_text(f"{model} sees", timeout=SLOW)
            task = "digits_scenes" if "digit" in model else "fashion_scenes"
            expect(gallery).to_contain_text(f"{task} test images", timeout=SLOW)
    finally:
        page.close()
