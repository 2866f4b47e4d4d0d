"""What the browser tests and the screenshot script share to drive the app's page in Chromium through Playwright."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1400, "height": 1000}
FILE_INPUT = "#image-input input[type=file]"
CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def chromium_context(home: Path, timeout_ms: float) -> Iterator[BrowserContext]:
    """A persistent headless Chromium whose profile, config and cache all live in `home` (removed afterwards), with
    `timeout_ms` as the default wait of its actions and of `expect`."""
    saved = {k: os.environ.get(k) for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    os.environ["XDG_CONFIG_HOME"], os.environ["XDG_CACHE_HOME"] = str(home / "config"), str(home / "cache")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(home / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
                viewport=VIEWPORT)
            context.set_default_timeout(timeout_ms)
            expect.set_options(timeout=timeout_ms)
            yield context
            context.close()
    finally:
        expect.set_options(timeout=5_000)  # Playwright's default
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(home, ignore_errors=True)


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


IDLE = """() => {
    const busy = [...document.querySelectorAll('[data-testid=status-tracker]')].some(t =>
        !t.classList.contains('hide') && t.offsetParent !== null && t.querySelector('.eta-bar, .progress-text, svg'));
    const loading = [...document.querySelectorAll('img')].some(i => i.offsetParent !== null && !i.complete);
    return !busy && !loading;
}"""


def wait_until_idle(page: Page, timeout_ms: float) -> None:
    """Wait until no visible component shows Gradio's loading indicator and every visible image has loaded: a
    component whose event is still running may be covered or replaced when that event answers."""
    page.wait_for_function(IDLE, timeout=timeout_ms)


def wait_for_rest(page: Page, quiet_ms: float, timeout_ms: float) -> list[str]:
    """Wait until the page makes no server call for `quiet_ms` (see `calls_during`); returns the calls it made before.
    Raises TimeoutError when it has not come to rest after `timeout_ms`: its events keep triggering each other."""
    made: list[str] = []
    waited = 0.0
    while waited < timeout_ms:
        calls = calls_during(page, quiet_ms)
        if not calls:
            return made
        made += calls
        waited += quiet_ms
    raise TimeoutError(f"the page made {len(made)} server calls in {timeout_ms / 1000:.0f} s and is still making them")


def calls_during(page: Page, ms: float) -> list[str]:
    """The URLs of the server calls the page makes (events joining the queue, unqueued runs) in the next `ms`: none
    once the page is at rest."""
    calls: list[str] = []

    def record(request) -> None:
        if "/queue/join" in request.url or "/gradio_api/run/" in request.url:
            calls.append(request.url)

    page.on("request", record)
    page.wait_for_timeout(ms)
    page.remove_listener("request", record)
    return calls


TOAST_RECORDER = """() => {
    if (window.__toasts) return;
    window.__toasts = [];
    new MutationObserver(records => { for (const record of records) for (const node of record.addedNodes) {
        if (!(node instanceof Element)) continue;
        const bodies = node.matches("[data-testid='toast-body']") ? [node]
            : node.querySelectorAll("[data-testid='toast-body']");
        for (const body of bodies) window.__toasts.push(body.innerText);
    } }).observe(document.body, {childList: true, subtree: true});
}"""


def record_toasts(page: Page) -> None:
    """From now on, remember the text of every toast the page shows (Gradio's toasts leave after a few seconds)."""
    page.evaluate(TOAST_RECORDER)


def toasts_shown(page: Page) -> list[str]:
    """The texts of the toasts shown since `record_toasts`, each once, in order."""
    return page.evaluate("() => window.__toasts.slice()")
