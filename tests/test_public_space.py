"""Safe on a public Space, round two (issue 28), over raw HTTP against `python app.py`: no request makes the server
fetch a URL, allocate for a weights file before its shapes are checked, or keep per-session state without bound;
one caller's heavy calls do not hold up another caller's light ones; every failure is one sentence, and the log
stays short. Through all of it the server's RSS stays within 300 MB of its settled value.
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from app import queue_policy
from app.service import RESULTS_KEPT
from scripts.app_server import call, endpoint_ids, refusal, rss_mb, start_app, stop_app, upload

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "assets" / "examples" / "scene_dress.png"
NOT_UPLOADED = "This file was not uploaded to this app"
MODEL = "convit_scenes_gpsa50"
RSS_BOUND_MB = 300


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """A server of its own, settled (backend imported, models preloaded, each endpoint these tests use called once,
    the dial's presets scored in the background, its kept streams filled): (process, url, tmp, settled RSS in MB).

    Its bounded stores are full before the RSS is read, so that what the tests see grow is not them filling: the
    shared answers get 16 MB (their bound is app.answers' own test), the analyses kept for re-rendering are
    RESULTS_KEPT images (about 10 MB each for this model: when the tests' own new images filled them instead, the
    memory in use rose 184 MB and the RSS bound failed), and two dial settings fill the streams the dial keeps
    (petl_core.dial.DialProbe: the last 2 settings, 32 MB each for this model: 256 images × 144 patches × 72
    channels in float32 entering each of GPSA blocks 1-3)."""
    tmp = tmp_path_factory.mktemp("space")
    process, url = start_app(tmp, 180, forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
                                               "EXPLORER_ANSWERS_MB": "16", "EXPLORER_MEMORY_LOG": "0.25"})
    with httpx.Client(timeout=120) as client:
        for seed in range(RESULTS_KEPT):
            filler = tmp / f"filler{seed}.png"
            Image.fromarray(np.random.default_rng(100 + seed).integers(0, 255, (48, 48), dtype=np.uint8)).save(filler)
            call(client, url, "analyze", [upload(client, url, filler), MODEL, None, "cls"])
        image = upload(client, url, SCENE)
        call(client, url, "analyze", [image, MODEL, None, "cls"])
        for sigma in (0.5, 0.25):
            call(client, url, "dial", [image, MODEL, json.dumps([[sigma] * 9, None, None, None]), "cls"])
        call(client, url, "equation", [image, MODEL, "3,4", 0, 0])
    time.sleep(15)  # (the presets' scoring, started by the first dial)
    yield process, url, tmp, rss_mb(process.pid)
    stop_app(process)


@pytest.fixture
def http():
    with httpx.Client(timeout=180) as client:
        yield client


def _within_bound(space) -> None:
    process, _, _tmp, settled = space
    _ = _tmp
    assert process.poll() is None, "the server died"
    from scripts.app_server import logged_memory_mb
    print("MEM", rss_mb(process.pid), settled, logged_memory_mb(_), flush=True)
    assert rss_mb(process.pid) - settled < RSS_BOUND_MB, (rss_mb(process.pid), settled)


def _join(client: httpx.Client, url: str, fn_index: int, data: list, session: str) -> httpx.Response:
    return client.post(f"{url}gradio_api/queue/join", json={"data": data, "fn_index": fn_index,
                                                            "session_hash": session, "event_data": None,
                                                            "trigger_id": None})


def _read(client: httpx.Client, url: str, session: str, events: set[str]) -> dict[str, dict]:
    """Read `session`'s event stream until every event of `events` completed: per event its start and end times as
    this client saw them, its success and its log messages (warnings)."""
    seen: dict[str, dict] = {e: {"logs": []} for e in events}
    with client.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            record = seen.get(message.get("event_id"))
            if record is None:
                continue
            if message.get("msg") == "process_starts":
                record["start"] = time.monotonic()
            elif message.get("msg") == "log":
                record["logs"].append(message.get("log"))
            elif message.get("msg") == "process_completed":
                record["end"], record["success"] = time.monotonic(), message.get("success")
                record["output"] = message.get("output")
                if all("end" in r for r in seen.values()):
                    return seen
    raise AssertionError(f"the stream ended before every event completed: {seen}")


class _CountingServer:
    """A loopback HTTP server standing in for any host a URL could name: it counts every connection."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"GIF8")

            def logrefusal(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


# --------------------------------------------------------------------------------------------------- fetches
def test_a_url_given_as_a_file_is_refused_before_any_connection(space, http):
    _, url, tmp, _ = space
    host = _CountingServer()
    try:
        remote = {"path": f"{host.url}/big.png", "meta": {"_type": "gradio.FileData"}}
        with_url = {"path": f"{host.url}/big.png", "url": f"{host.url}/big.png", "orig_name": "big.png",
                    "meta": {"_type": "gradio.FileData"}}
        hub = {"path": "https://huggingface.co/timm/vit_base_patch16_224.augreg_in21k/resolve/main/model.safetensors",
               "meta": {"_type": "gradio.FileData"}}
        image = upload(http, url, SCENE)
        cases = {"image as a URL (REST)": ("analyze", [remote, MODEL, None, "cls"]),
                 "image with its url too": ("analyze", [with_url, MODEL, None, "cls"]),
                 "weights as a URL": ("analyze", [image, "deit_tiny_patch16_224.fb_in1k", remote, "cls"]),
                 "a hub file": ("analyze", [hub, MODEL, None, "cls"]),
                 "a dial's image": ("dial", [remote, MODEL, None, "cls"])}
        for case, (endpoint, data) in cases.items():
            started = time.monotonic()
            assert NOT_UPLOADED in refusal(http, url, endpoint, data), case
            assert time.monotonic() - started < 5, case
        ids = endpoint_ids(http, url)  # the page's own way in: queue/join, which Gradio treats as a page call
        session = uuid.uuid4().hex[:11]
        event = _join(http, url, ids["analyze"], [remote, MODEL, None, "cls"], session).json()["event_id"]
        result = _read(http, url, session, {event})[event]
        assert not result["success"] and NOT_UPLOADED in result["output"]["error"]
        assert host.hits == [], host.hits
        assert "huggingface.co" not in (tmp / "server.log").read_text()
    finally:
        host.close()
    _within_bound(space)


def test_a_weights_file_is_checked_against_the_architecture_before_any_library_reads_it(space, http, tmp_path):
    """A 90 KB file whose patch embedding is [1, 1, 150, 150] made timm build a 2 GB resampling matrix."""
    _, url, _, _ = space
    path = tmp_path / "patch_only.safetensors"
    save_file({"patch_embed.proj.weight": torch.zeros(1, 1, 150, 150)}, str(path))
    image = upload(http, url, SCENE)
    for model in ("deit_tiny_patch16_224.fb_in1k", "deit_scenes"):
        started = time.monotonic()
        message = refusal(http, url, "analyze", [image, model, upload(http, url, path), "cls"])
        assert "patch_embed.proj.weight" in message and "(1, 1, 150, 150)" in message, message
        assert time.monotonic() - started < 10
    _within_bound(space)


# --------------------------------------------------------------------------------------------------- sessions
def test_session_state_is_bounded(space, http):
    process, url, _, _ = space
    ids = endpoint_ids(http, url)
    models = ids["models"]  # a light call with no inputs
    for i in range(220):  # session hashes of 3 MB: refused before Gradio keeps anything under them
        response = _join(http, url, models, [], f"{i:04d}" + "x" * (3 * 2**20))
        assert response.status_code == 400 and "session id" in response.json()["detail"], response.text[:200]
    _within_bound(space)
    for i in range(400):  # 400 sessions that join and never read their results: the oldest are dropped
        assert _join(http, url, models, [], f"abandoned{i}").status_code == 200
    session = "greedy"
    answers = [_join(http, url, models, [], session) for _ in range(queue_policy.MAX_PENDING_PER_SESSION + 4)]
    assert [a.status_code for a in answers].count(200) == queue_policy.MAX_PENDING_PER_SESSION
    assert "results waiting to be read" in answers[-1].json()["detail"]
    assert call(http, url, "models", [])  # and everyone else is still served
    _within_bound(space)


def test_an_event_number_the_app_lacks_gets_a_sentence(space, http):
    _, url, tmp, _ = space
    before = (tmp / "server.log").read_text().count("Traceback")
    for number in (10**9, -1):
        response = _join(http, url, number, [], uuid.uuid4().hex[:11])
        assert response.status_code == 400 and "no event with that number" in response.json()["detail"]
    assert (tmp / "server.log").read_text().count("Traceback") == before


# --------------------------------------------------------------------------------------------------- fairness
def test_a_callers_heavy_calls_wait_in_their_own_lane_and_take_turns(space, http):
    """One session asks for 8 dial scorings at once: 4 are taken (MAX_HEAVY_PER_CALLER), the rest refused in a
    sentence; another session's heavy call takes its turn before that session's third; a light /analyze of a new
    image does not wait for them at all."""
    _, url, tmp, _ = space
    ids = endpoint_ids(http, url)
    image = upload(http, url, SCENE)
    heavy, other = "heavycaller", "othercaller"

    def gates(i: int) -> str:
        return json.dumps([[round(0.05 + 0.1 * i, 2)] * 9, None, None, None])

    answers = [_join(http, url, ids["dial"], [image, MODEL, gates(i), "cls"], heavy) for i in range(8)]
    taken = [a.json()["event_id"] for a in answers if a.status_code == 200]
    assert len(taken) == queue_policy.MAX_HEAVY_PER_CALLER, [a.text[:200] for a in answers]
    assert all("slow computations" in a.json()["detail"] for a in answers if a.status_code != 200)
    theirs = _join(http, url, ids["dial"], [image, MODEL, gates(9), "cls"], other).json()["event_id"]
    new_image = tmp / "new.png"
    Image.fromarray(np.random.default_rng(7).integers(0, 255, (48, 48), dtype=np.uint8)).save(new_image)
    light = _join(http, url, ids["analyze"], [upload(http, url, new_image), MODEL, None, "cls"], other)
    light = light.json()["event_id"]
    with ThreadPoolExecutor(1) as pool:  # both streams read as their messages come
        mine = pool.submit(_read, httpx.Client(timeout=180), url, heavy, set(taken))
        results = {**_read(http, url, other, {theirs, light}), **mine.result()}
    assert all(r["success"] for r in results.values()), results
    assert results[light]["end"] < results[taken[1]]["end"]  # not behind the heavy queue
    assert results[theirs]["start"] < results[taken[2]]["start"]  # its turn came before the greedy one's third
    _within_bound(space)


# --------------------------------------------------------------------------------------------------- sentences
def test_every_failure_is_one_sentence_and_the_log_stays_short(space, http):
    process, url, tmp, _ = space
    image = upload(http, url, SCENE)
    nul = {"path": "/tmp/a\x00b.png", "meta": {"_type": "gradio.FileData"}}
    assert NOT_UPLOADED in refusal(http, url, "analyze", [nul, MODEL, None, "cls"])
    deep = "[" * 9999 + "]" * 9999
    assert "not valid JSON" in refusal(http, url, "dial", [image, MODEL, deep, "cls"])
    digits = refusal(http, url, "dial", [image, MODEL, "[[" + "9" * 5000 + "]]", "cls"])
    assert "not valid JSON" in digits and "int_max_str_digits" not in digits
    # optional trailing inputs may be left out over REST, on every endpoint that has them
    assert call(http, url, "equation", [image, MODEL, "3,4", 0, 0])
    assert call(http, url, "attention", [image, MODEL, None, "3,4", 1, 0])
    before = (tmp / "server.log").read_text()
    for _ in range(20):  # uploads cut off mid-body: the caller hangs up
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/")))) as raw:
            raw.sendall(b"POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\nContent-Disposition: form-data;"
                        b" name=\"files\"; filename=\"a.png\"\r\n\r\n" + b"x" * 5000)
    time.sleep(1)  # (the server notices the hang-ups)
    added = (tmp / "server.log").read_text()[len(before):]
    assert "Traceback" not in added and "ClientDisconnect" not in added, added[:2000]
    assert process.poll() is None


def test_a_links_text_reaches_the_page_as_text(space, http):
    _, url, _, _ = space
    ids = endpoint_ids(http, url)
    session = uuid.uuid4().hex[:11]
    event = _join(http, url, ids["read_link"], ["model=<img src=x onerror=alert(1)>"], session).json()["event_id"]
    logs = _read(http, url, session, {event})[event]["logs"]
    assert logs and all("<img" not in text for text in logs) and any("&lt;img" in text for text in logs), logs
