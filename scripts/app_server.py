"""Start `python app.py` as a real server on a free local port, call it over Gradio's raw REST API, and stop it: for
the tests, screenshots and bench."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["CallError", "call", "endpoint_ids", "logged_memory_mb", "refusal", "rss_mb", "start_app", "stop_app",
           "timed_call", "upload"]


class CallError(RuntimeError):
    """An endpoint answered with an error event; `message` is what a user of the page would read."""

    def __init__(self, endpoint: str, message: str | None) -> None:
        super().__init__(f"{endpoint}: {message}")
        self.message = message


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(tmp: Path, timeout: float, defaults: dict | None = None, forced: dict | None = None,
              settled: bool = True) -> tuple[subprocess.Popen, str]:
    """`python app.py` on a free port, its temp files and log (server.log) under `tmp`; returns the process and its
    URL once it answers and, when `settled`, has imported its backend and preloaded its models (its log says
    `preloaded:`; the page is served before both: measures of memory or speed start from a server at rest).
    `defaults`: environment the caller's environment may override; `forced`: may not."""
    port = _free_port()
    env = {**(defaults or {}), **os.environ, **(forced or {}), "GRADIO_SERVER_NAME": "127.0.0.1",
           "GRADIO_SERVER_PORT": str(port), "GRADIO_TEMP_DIR": str(tmp / "gradio"), "TMPDIR": str(tmp),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (tmp / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child holds its own handle
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}: {(tmp / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as response:
                if response.status == 200 and (not settled or "preloaded:" in (tmp / "server.log").read_text()):
                    return process, url
        except OSError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"app.py did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def stop_app(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def call(client: httpx.Client, url: str, endpoint: str, data: list) -> list:
    """One call over Gradio's REST API, as any HTTP client can make it: POST the inputs to
    /gradio_api/call/<endpoint>, then read the event stream to its 'complete' event. Raises CallError."""
    url = url.rstrip("/")
    response = client.post(f"{url}/gradio_api/call/{endpoint}", json={"data": data})
    if response.status_code != 200:
        raise CallError(endpoint, f"HTTP {response.status_code}: {response.text[:300]}")
    event = response.json()["event_id"]
    kind = None
    with client.stream("GET", f"{url}/gradio_api/call/{endpoint}/{event}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                payload = json.loads(line[5:])
                if kind == "error":
                    raise CallError(endpoint, payload)
                return payload
    raise CallError(endpoint, "the event stream ended without a result")


def refusal(client: httpx.Client, url: str, endpoint: str, data: list) -> str:
    """The message a user of `endpoint` reads for `data`: the call must fail with one (AssertionError if it succeeds
    or fails without a message, e.g. a bare HTTP 500 or `{"error": null}`)."""
    try:
        call(client, url, endpoint, data)
    except CallError as failure:
        message = failure.message
        assert isinstance(message, dict) and message.get("error"), f"a bare error without a message: {message}"
        return message["error"]
    raise AssertionError(f"{endpoint} answered {str(data)[:200]} instead of refusing it")


def upload(client: httpx.Client, url: str, path: Path) -> dict:
    """Upload a file through Gradio's upload route; returns the file parameter that names it."""
    with path.open("rb") as f:
        uploaded = client.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": (path.name, f)}).json()[0]
    return {"path": uploaded, "meta": {"_type": "gradio.FileData"}}


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid`, in MB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def logged_memory_mb(tmp: Path) -> dict[str, float]:
    """The last memory line of the server started with its files under `tmp` (app.py --memory-log), in MB:
    {"rss_mb", "heap_in_use_mb"}; empty before the first line."""
    lines = [line for line in (tmp / "server.log").read_text().splitlines() if line.startswith("memory: ")]
    return {key: float(value) for key, value in (pair.split("=") for pair in lines[-1].split()[1:])} if lines else {}


def endpoint_ids(client: httpx.Client, url: str) -> dict[str, int]:
    """api_name -> the event's id, which the page's own calls (/gradio_api/queue/join) name it by; private events
    (the page's helpers) are listed too, as anyone may call them that way."""
    config = client.get(f"{url.rstrip('/')}/config").json()
    return {d["api_name"]: d["id"] for d in config["dependencies"] if d.get("api_name")}


def timed_call(client: httpx.Client, url: str, fn_index: int, data: list, session: str | None = None) -> dict:
    """One call the way the page makes it (queue/join, then the session's event stream), in page session `session`
    (default: a new one), with the times the server started and finished processing it as this client saw them:
    {"start", "end", "output" or "error"}."""
    url = url.rstrip("/")
    session = session or uuid.uuid4().hex
    client.post(f"{url}/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                      "event_data": None, "trigger_id": None}).raise_for_status()
    result = {"start": None, "end": None}
    with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") == "process_starts":
                result["start"] = time.monotonic()
            elif message.get("msg") == "process_completed":
                result["end"] = time.monotonic()
                output = message.get("output") or {}
                if message.get("success"):
                    result["output"] = output.get("data")
                else:
                    result["error"] = output.get("error")
                return result
    raise CallError(str(fn_index), "the event stream ended without a result")
