"""The locality atlas in a real browser (Debian's headless Chromium through Playwright): hover a point, click it, and
the page's image becomes that probe image and is analysed; the number box and Load do the same from the keyboard."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from browser_support import expect  # (skips the module without Chromium or Playwright)
from PIL import Image

from petl_core import zoo
from petl_core.analysis import analyze
from petl_core.dial import probe_set
from scripts.browser_page import FILE_INPUT, chromium_context, open_tab

pytestmark = pytest.mark.browser

SLOW = 90_000  # ms: the first atlas traces the probe set through both models on a busy machine


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    """A persistent Chromium context whose profile, config and cache all live in a temp folder."""
    with chromium_context(tmp_path_factory.mktemp("chromium"), SLOW) as context:
        yield context


@pytest.fixture(scope="module")
def probe():
    return probe_set(zoo.load(zoo.DEFAULT_MODEL).card.recipe["data"])


def _top1(probe, index: int) -> str:
    """The default model's top-1 class for probe image `index` as an upload of it would be analysed, here."""
    loaded = zoo.load(zoo.DEFAULT_MODEL)
    picture = Image.fromarray(probe.images[index, 0].numpy())
    return analyze(loaded.model, loaded.preprocess(picture).unsqueeze(0)).summary()["top5"][0]["label"]


def _points(page, panel: int, skip: int = -1) -> dict:
    """The image number and the viewport position of the point of panel `panel` (1: ConViT, 2: DeiT) farthest from
    any other (so it is the one under the cursor; none within 3 pixels), none of image `skip`."""
    return page.evaluate("""([panel, skip]) => {
        const gd = document.querySelector('#atlas-plot .js-plotly-plot');
        const axis = panel === 1 ? '' : String(panel);
        const xa = gd._fullLayout['xaxis' + axis], ya = gd._fullLayout['yaxis' + axis];
        const box = gd.querySelector('svg.main-svg').getBoundingClientRect();
        const points = [];
        gd._fullData.forEach((t) => {
            if (t.type !== 'scatter' || t.xaxis !== 'x' + axis) return;
            for (let i = 0; i < t.y.length; i++) {
                points.push({index: t.customdata[i][0], x: box.left + xa._offset + xa.l2p(t.x[i]),
                             y: box.top + ya._offset + ya.l2p(t.y[i])});
            }
        });
        const room = (p) => Math.min(...points.map((q) => q === p ? Infinity : Math.hypot(q.x - p.x, q.y - p.y)));
        const candidates = points.filter((p) => p.index !== skip).map((p) => [room(p), p]);
        candidates.sort((a, b) => b[0] - a[0]);
        return candidates.length && candidates[0][0] > 3 ? candidates[0][1] : null;
    }""", [panel, skip])


def _picker_src(page) -> str | None:
    """The src of the picture of what the model saw (None before the first analysis)."""
    img = page.locator("#picker img")
    return img.first.get_attribute("src") if img.count() else None


def _loads(page, probe, index: int, picker_before: str | None) -> None:
    """The number box says `index`, the image input shows probe image `index`, and the page analysed it: a new
    picture of what the model saw, and the top-1 of that image."""
    expect(page.locator("#atlas-index input")).to_have_value(str(index))
    expect(page.locator("#atlas-picked")).to_contain_text(f"probe image #{index}:")
    img = page.locator(f"#image-input img[src*='probe_{index}.png']")
    expect(img).to_be_visible()
    shown = np.array(Image.open(io.BytesIO(page.request.get(img.get_attribute("src")).body())))
    assert np.array_equal(shown, probe.images[index, 0].numpy())
    page.wait_for_function("before => { const i = document.querySelector('#picker img'); "
                           "return i && i.getAttribute('src') !== before && i.complete && i.naturalWidth > 0; }",
                           arg=picker_before, timeout=SLOW)
    expect(page.locator("#top5 [data-testid='label-output-value']")).to_have_text(_top1(probe, index))


def test_clicking_a_point_loads_that_probe_image_and_analyses_it(browser, app_server, probe, tmp_path):
    page = browser.new_page()
    page.goto(app_server)
    page.wait_for_selector(FILE_INPUT, state="attached")
    try:
        open_tab(page, "Atlas")
        plot = page.locator("#atlas-plot .js-plotly-plot")
        expect(plot.locator("svg.main-svg").first).to_be_attached()
        expect(plot).to_contain_text("nonlocality (patches)")
        expect(page.locator("#atlas-note")).to_contain_text(f"of {len(probe)} right")
        plot.scroll_into_view_if_needed()
        page.wait_for_function("() => document.querySelector('#atlas-plot .js-plotly-plot')?._fullData?.length > 0")

        point = _points(page, 1)
        assert point, "no ConViT point stands alone"
        page.mouse.move(point["x"], point["y"])
        hover = plot.locator(".hoverlayer")
        expect(hover).to_contain_text(f"image #{point['index']}: true {probe.classes[probe.labels[point['index']]]}")
        before = _picker_src(page)
        page.mouse.click(point["x"], point["y"])
        _loads(page, probe, point["index"], before)

        # another point, now in the DeiT's panel: the listener outlives the first load
        other = _points(page, 2, skip=point["index"])
        assert other, "no DeiT point stands alone"
        before = _picker_src(page)
        page.mouse.click(other["x"], other["y"])
        _loads(page, probe, other["index"], before)

        # from the keyboard: type a number, press Enter
        chosen = next(i for i in (3, 4, 5) if i not in (point["index"], other["index"]))
        box = page.locator("#atlas-index input")
        box.fill(str(chosen))
        before = _picker_src(page)
        box.press("Enter")
        _loads(page, probe, chosen, before)
        expect(page.locator("#atlas-picked")).to_contain_text(re.compile(r"ConViT predicts .+; DeiT predicts"))

        # the DeiT's point again (where it is now: typing scrolled the page): clicked a second time, it still loads
        again = _points(page, 2, skip=point["index"])
        assert again["index"] == other["index"]
        before = _picker_src(page)
        page.mouse.click(again["x"], again["y"])
        _loads(page, probe, other["index"], before)
    finally:
        page.screenshot(path=str(Path(os.environ.get("EXPLORER_ARTEFACTS", tmp_path)) / "atlas.png"), full_page=True)
        page.close()
