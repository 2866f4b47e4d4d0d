"""Does the page come to rest? A benchmark, not a test.

Drives `python app.py` in headless Chromium through the actions that once left Gradio's change events firing for
ever, and counts the server calls the page makes after each (events joining the queue and unqueued runs, as
`scripts/browser_page.calls_during` counts them) until it makes none for `--quiet` seconds: the seconds it took to
come to rest (counted in steps of `--quiet`; "never" after `--limit`) and its calls until then, each named by what
triggered it (a component's elem_id, "(chained)" for a step of a chain) and the handler's name.

1. link         open `?model=convit_scenes&example=scene_dress.png&tab=gpsa&block=2&query=3,4`
2. upload+cls   upload a photo and press "Class token" while it is analysed
3. gallery      pick the first example of the gallery
4. guide        open step 2 of the guided path

    .venv/bin/python bench/page_rest.py [--quiet 5] [--limit 120] [--repeat 1]
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.app_server import start_app, stop_app  # noqa: E402
from scripts.browser_page import FILE_INPUT, chromium_context, wait_until_idle  # noqa: E402

LINK = "?model=convit_scenes&example=scene_dress.png&tab=gpsa&block=2&query=3,4"
SLOW = 120_000


def _names(url: str) -> tuple[dict[int, str], dict[int, str]]:
    """From the page's /config: fn_index → its handler's name (its api_name), component id → its elem_id."""
    config = httpx.get(url + "config", follow_redirects=True, timeout=30).json()
    components = {c["id"]: c.get("props", {}).get("elem_id") or f"{c.get('type')}#{c['id']}"
                  for c in config["components"]}
    handlers = {dep.get("id", index): str(dep.get("api_name") or index)
                for index, dep in enumerate(config["dependencies"])}
    return handlers, components


def _count(page, seconds: float, handlers: dict[int, str], components: dict[int, str]) -> collections.Counter:
    """The page's server calls in the next `seconds`, counted by 'trigger → handler' (a chained event has none)."""
    calls: collections.Counter = collections.Counter()

    def record(request) -> None:
        if "/queue/join" in request.url or "/gradio_api/run/" in request.url:
            try:
                body = json.loads(request.post_data or "{}")
            except ValueError:
                body = {}
            trigger = components.get(body.get("trigger_id"), "(chained)")
            calls[f"{trigger} → {handlers.get(body.get('fn_index'), body.get('fn_index'))}"] += 1

    page.on("request", record)
    page.wait_for_timeout(seconds * 1000)
    page.remove_listener("request", record)
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", type=float, default=5, help="seconds without a call that count as rest")
    parser.add_argument("--limit", type=float, default=120, help="seconds after which a page not at rest never will")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (the loops were timing-dependent)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="page-rest-"))
    process, url = start_app(tmp, timeout=180)
    handlers, components = _names(url)
    query = "#query textarea, #query input"
    total = 0
    try:
        with chromium_context(tmp / "chromium", SLOW) as context:
            def scenario(name: str, act) -> None:
                nonlocal total
                page = context.new_page()
                try:
                    act(page)
                    made: collections.Counter = collections.Counter()
                    waited, rest = 0.0, "never"
                    while waited < args.limit:
                        calls = _count(page, args.quiet, handlers, components)
                        if not calls:
                            rest = f"{waited:.0f}"
                            break
                        made += calls
                        waited += args.quiet
                finally:
                    page.close()
                total += sum(made.values())
                print(f"{name:11s} seconds_to_rest={rest} calls_until_rest={sum(made.values())}", flush=True)
                for event, n in made.most_common():
                    print(f"    {n:4d}  {event}")

            def link(page) -> None:
                page.goto(url + LINK)
                expect(page.locator(query).first).to_have_value("3,4")

            def upload_cls(page) -> None:
                page.goto(url)
                wait_until_idle(page, SLOW)
                page.set_input_files(FILE_INPUT, str(ROOT / "assets" / "examples" / "chelsea.png"))
                page.get_by_role("button", name="Class token", exact=True).click()
                expect(page.locator(query).first).to_have_value("cls")

            def gallery(page) -> None:
                page.goto(url)
                wait_until_idle(page, SLOW)
                page.locator("#examples .thumbnail-item").first.click()
                expect(page.locator("#top5")).to_contain_text("%")

            for _ in range(args.repeat):
                scenario("link", link)
                scenario("upload+cls", upload_cls)
                scenario("gallery", gallery)
                scenario("guide", lambda page: page.goto(url + "?guide=2"))
    finally:
        stop_app(process)
    print(f"total calls={total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
