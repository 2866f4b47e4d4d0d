"""What the browser tests and the screenshot script share to drive the app's page in Chromium through Playwright."""
from __future__ import annotations

from playwright.sync_api import Page, expect

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1400, "height": 1000}
FILE_INPUT = "#image-input input[type=file]"


def point_on(img, fx: float, fy: float) -> dict:
    """The point at fractions (fx, fy) of the picture an <img> draws, relative to the element's box: with object-fit
    contain or scale-down (Gradio's) the picture is centred in the box at its own aspect ratio."""
    return img.evaluate("""(img, [fx, fy]) => {
        const r = img.getBoundingClientRect(), fit = getComputedStyle(img).objectFit;
        let w = r.width, h = r.height;
        if (fit === 'contain' || fit === 'scale-down') {
            const s = Math.min(w / img.naturalWidth, h / img.naturalHeight, fit === 'scale-down' ? 1 : Infinity);
            w = img.naturalWidth * s; h = img.naturalHeight * s;
        }
        return {x: (r.width - w) / 2 + fx * w, y: (r.height - h) / 2 + fy * h};
    }""", [fx, fy])


def open_tab(page: Page, name: str) -> None:
    """Click the tab called `name` and wait until it is the selected one."""
    tab = page.get_by_role("tab", name=name, exact=True)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
