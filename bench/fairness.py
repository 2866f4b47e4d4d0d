"""Do one caller's heavy calls starve another caller's light ones? A benchmark, not a test.

Side by side in one run, on the same server (`python app.py`, its defaults: --concurrency 2) and machine:

1. quiet   a light client, in its own page session, makes N /analyze calls of the default shipped model one after
           another, each of a new image (distinct random 320×240 images uploaded first, so no cache answers),
           alternately the way the page calls (/gradio_api/queue/join in its session, then the session's stream)
           and over the REST API (/gradio_api/call/analyze);
2. loaded  the same, while a heavy client in ONE other page session keeps H calls queued through the whole light run
           (joined all at once before the light client starts, each re-queued as it completes; one refused is counted
           by the server's message and not replaced): half /dial calls
           of the default ConViT, each with a new σ per head (so no cached probe accuracy answers: each scores the
           probe set again), half /compare calls of the 4 scenes models, each of a new image (the server takes
           MAX_HEAVY_PER_CALLER of them and refuses the rest);
3. spread  the same with the H heavy calls spread over K sessions (--heavy-sessions, default 5), so that all H are
           queued: the light lane alone, without the limit per caller, keeps the light calls fast.

Per phase it prints the light calls' latency (end to end as the client sees it, from the call to its answer; the
uploads are made before) p50 / p95 / max, how many succeeded, the heavy calls completed, refused (counted by the
server's message, each message printed once) and still pending when the light run ends, and the server's RSS before
and after; then loaded p95 / quiet p95 and the target line (loaded /analyze p95 ≤ 2 s).

The teammates' training runs (experiments.make_assets) would take both CPU cores: unless --no-pause they are paused
(SIGSTOP) for the run and always resumed (SIGCONT) afterwards, on an error, Ctrl-C or SIGTERM too.

    .venv/bin/python bench/fairness.py [--light 20] [--heavy 20] [--heavy-sessions 5] [--model convit_scenes_gpsa50]
                                       [--concurrency 2] [--json out.json] [--no-pause]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from petl_core import catalog  # noqa: E402 (torch-free)
from scripts.app_server import (  # noqa: E402
    CallError,
    call,
    endpoint_ids,
    rss_mb,
    start_app,
    stop_app,
    timed_call,
    upload,
)
from scripts.pause_training import TRAINING, paused, stop_on_sigterm  # noqa: E402

TARGET_S = 2.0
"""The target: the light client's /analyze p95 while another session's heavy calls are queued."""
"""The command line of the teammates' training runs, paused for the bench."""
COMPARED = ["deit_scenes", "convit_scenes_gpsa50", "convit_scenes", "convpass_digit_scenes"]
"""The 4 models of each heavy /compare call."""
GOLDEN = (math.sqrt(5) - 1) / 2


def _image(folder: Path, seed: int) -> Path:
    """A new random 320×240 colour image (as bench/load.py makes them)."""
    path = folder / f"image{seed}.png"
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(path)
    return path


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _message(error: object) -> str:
    """One line for a refusal or failure, whatever shape the server gave it."""
    if isinstance(error, dict):
        error = error.get("error") or error.get("detail") or error
    return " ".join(str(error).split())[:300]




# --------------------------------------------------------------------------------------------------- heavy client
class Heavy:
    """One page session that keeps `depth` heavy calls queued: joins them all at once, reads the session's one event
    stream, and joins a new call of the same kind as each completes, until `stop`. A call the server refuses (at the
    join, or answered with an error) is counted by its message and not replaced."""

    def __init__(self, url: str, ids: dict[str, int], folder: Path, depth: int, dial_model: str,
                 gate_shape: tuple[int, int], seed: int = 500_000) -> None:
        self.url, self.ids, self.folder, self.depth = url.rstrip("/"), ids, folder, depth
        self.dial_model, self.gate_shape = dial_model, gate_shape
        self.session = uuid.uuid4().hex
        self.http = httpx.Client(timeout=60)
        self.lock = threading.Lock()
        self.kind: dict[str, str] = {}  # event id -> "dial" | "compare", while pending
        self.joined = Counter()
        self.completed = Counter()
        self.refused: Counter[str] = Counter()  # message -> count (refused at join or answered with an error)
        self.seed = seed
        self.dials = seed
        self.stopping = threading.Event()
        self.started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _inputs(self, kind: str) -> list:
        with self.lock:
            self.seed += 1
            seed = self.seed
        image = upload(self.http, self.url, _image(self.folder, seed))
        if kind == "compare":
            return [image, COMPARED, 2, "cls", True]
        with self.lock:
            self.dials += 1
            k = self.dials
        blocks, heads = self.gate_shape  # a new σ per head and per call: no setting repeats
        gates = [[round((k * GOLDEN + 0.37 * b + 0.11 * h) % 1.0, 4) for h in range(heads)] for b in range(blocks)]
        return [image, self.dial_model, json.dumps(gates), "center"]

    def join(self, kind: str) -> None:
        data = self._inputs(kind)
        response = self.http.post(f"{self.url}/gradio_api/queue/join", json={
            "data": data, "fn_index": self.ids[kind], "session_hash": self.session, "event_data": None,
            "trigger_id": None})
        with self.lock:
            self.joined[kind] += 1
            if response.status_code == 200:
                self.kind[response.json()["event_id"]] = kind
            else:
                try:
                    detail = response.json().get("detail", response.text)
                except ValueError:
                    detail = response.text
                self.refused[f"{kind}: HTTP {response.status_code}: {_message(detail)}"] += 1

    def start(self) -> None:
        for i in range(self.depth):
            self.join("dial" if i % 2 == 0 else "compare")
        self.thread.start()
        self.started.wait(30)

    def _run(self) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(60, read=120)) as stream_client, stream_client.stream(
                    "GET", f"{self.url}/gradio_api/queue/data", params={"session_hash": self.session}) as stream:
                self.started.set()
                for line in stream.iter_lines():
                    if self.stopping.is_set():
                        return  # leaving the stream: the server drops the session's calls still queued
                    if not line.startswith("data:"):
                        continue
                    message = json.loads(line[5:])
                    if message.get("msg") != "process_completed":
                        continue
                    with self.lock:
                        kind = self.kind.pop(message.get("event_id"), None)
                        if kind is None:
                            continue
                        succeeded = bool(message.get("success"))
                        if succeeded:
                            self.completed[kind] += 1
                        else:
                            self.refused[f"{kind}: {_message((message.get('output') or {}).get('error'))}"] += 1
                    if succeeded and not self.stopping.is_set():  # (a refused call is not retried: no busy loop)
                        self.join(kind)
        except BaseException as e:  # reported with the numbers
            if not self.stopping.is_set():
                self.error = e
        finally:
            self.started.set()

    def snapshot(self) -> dict:
        with self.lock:
            return {"joined": dict(self.joined), "completed": dict(self.completed),
                    "completed_total": sum(self.completed.values()), "refused": dict(self.refused),
                    "refused_total": sum(self.refused.values()), "pending": len(self.kind)}

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(15)
        self.http.close()


# --------------------------------------------------------------------------------------------------- light client
def light_run(url: str, ids: dict[str, int], folder: Path, model: str, count: int, first_seed: int) -> dict:
    """`count` /analyze calls of new images, one after another, alternately as the page makes them (queue/join in this
    client's own session) and over REST (/gradio_api/call/analyze)."""
    session = uuid.uuid4().hex
    results = {"page": [], "rest": []}
    failures: Counter[str] = Counter()
    with httpx.Client(timeout=600) as http:
        files = [upload(http, url, _image(folder, first_seed + i)) for i in range(count)]
        for i, file in enumerate(files):
            way = "page" if i % 2 == 0 else "rest"
            data = [file, model, None, "cls"]
            begin = time.perf_counter()
            try:
                if way == "page":
                    answer = timed_call(http, url, ids["analyze"], data, session=session)
                    if "output" not in answer:
                        raise CallError("analyze", answer.get("error"))
                else:
                    call(http, url, "analyze", data)
                results[way].append(time.perf_counter() - begin)
            except (CallError, httpx.HTTPError) as e:
                failures[f"{way}: {_message(getattr(e, 'message', None) or e)}"] += 1
    every = results["page"] + results["rest"]
    summary = {"calls": count, "success": len(every), "failures": dict(failures)}
    for name, values in (("all", every), *results.items()):
        summary[name] = {"n": len(values), "p50_s": _percentile(values, 50), "p95_s": _percentile(values, 95),
                         "max_s": max(values) if values else None}
    return summary


# --------------------------------------------------------------------------------------------------- report
def _merged(snapshots: list[dict]) -> dict:
    """The heavy clients' snapshots of one phase, added up."""
    merged = {"joined": Counter(), "completed": Counter(), "refused": Counter(), "pending": 0}
    for snapshot in snapshots:
        for key in ("joined", "completed", "refused"):
            merged[key].update(snapshot[key])
        merged["pending"] += snapshot["pending"]
    return {**{k: dict(v) if isinstance(v, Counter) else v for k, v in merged.items()},
            "completed_total": sum(merged["completed"].values()), "refused_total": sum(merged["refused"].values())}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(phases: dict, args: argparse.Namespace) -> dict:
    print(f"\n{args.model}, {os.cpu_count()} CPU cores, app.py --concurrency {args.concurrency}; light: {args.light} "
          f"/analyze calls of new images, one after another (page and REST alternately); heavy: {args.heavy} calls "
          f"kept joined in one other session (loaded) or {args.heavy_sessions} (spread) (/dial of "
          f"{catalog.DEFAULT_MODEL} with a new σ each, /compare of {len(COMPARED)} models)\n")
    print("| phase | light calls | success | p50 s | p95 s | max s | page p50 / p95 s | REST p50 / p95 s | "
          "heavy completed | heavy refused | heavy pending | light run s | server RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|")
    messages: Counter[str] = Counter()
    for name, phase in phases.items():
        light, heavy = phase["light"], phase.get("heavy")
        completed = "-" if heavy is None else (f"{heavy['completed_total']} ("
                                               + ", ".join(f"{k} {v}" for k, v in sorted(heavy["completed"].items()))
                                               + ")")
        print(f"| {name} | {light['calls']} | {light['success']} | {_s(light['all']['p50_s'])} | "
              f"{_s(light['all']['p95_s'])} | {_s(light['all']['max_s'])} | {_s(light['page']['p50_s'])} / "
              f"{_s(light['page']['p95_s'])} | {_s(light['rest']['p50_s'])} / {_s(light['rest']['p95_s'])} | "
              f"{completed} | {'-' if heavy is None else heavy['refused_total']} | "
              f"{'-' if heavy is None else heavy['pending']} | {phase['wall_s']:.1f} | "
              f"{phase['rss_before_mb']:.0f} → {phase['rss_after_mb']:.0f} |")
        messages.update(light["failures"])
        if heavy:
            messages.update(heavy["refused"])
            if heavy.get("error"):
                print(f"  (heavy client stopped early: {heavy['error']})")
    if messages:
        print("\nrefusals and failures, each message once (count):")
        for message, count in messages.most_common():
            print(f"  {count} × {message}")
    quiet, numbers = phases["quiet"]["light"]["all"]["p95_s"], {"target_s": TARGET_S}
    for name in ("loaded", "spread"):
        loaded = phases[name]["light"]["all"]["p95_s"]
        ratio = loaded / quiet if quiet and loaded is not None else None
        met = loaded is not None and loaded <= TARGET_S and phases[name]["light"]["success"] == args.light
        print(f"\n{name} p95 / quiet p95: {_s(ratio)}; target: {name} /analyze p95 <= {TARGET_S:.0f} s: "
              f"{'met' if met else 'not met'} ({name} p95 {_s(loaded)} s)", end="")
        numbers.update({f"ratio_{name}_quiet_p95": ratio, f"target_met_{name}": met})
    print()
    return numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--light", type=int, default=20, help="the light client's /analyze calls per phase")
    parser.add_argument("--heavy", type=int, default=20, help="heavy calls kept queued (half /dial, half /compare)")
    parser.add_argument("--heavy-sessions", type=int, default=5, help="sessions the spread phase's heavy calls come "
                                                                          "from")
    parser.add_argument("--model", default=catalog.DEFAULT_MODEL, help="the light client's model")
    parser.add_argument("--concurrency", type=int, default=2, help="app.py's --concurrency (EXPLORER_CONCURRENCY)")
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    parser.add_argument("--no-pause", action="store_true", help=f"leave the {TRAINING} runs running")
    args = parser.parse_args()
    stop_on_sigterm()
    folder = Path(tempfile.mkdtemp(prefix="app-fairness-"))
    phases: dict[str, dict] = {}
    with paused(not args.no_pause):
        process, url = start_app(folder, 300, forced={"EXPLORER_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
                                                      "EXPLORER_CONCURRENCY": str(args.concurrency)})
        heavies: list[Heavy] = []
        try:
            with httpx.Client(timeout=300) as http:
                ids = endpoint_ids(http, url)
                # warm-up: the light model, the dial (its presets are then scored in the background) and the 4 models
                # of /compare, loaded and run once, so that neither phase pays a first call
                warm = upload(http, url, _image(folder, 999_999))
                call(http, url, "analyze", [warm, args.model, None, "cls"])
                gates = call(http, url, "dial", [warm, catalog.DEFAULT_MODEL, "", "center"])[-1]["gates"]
                call(http, url, "compare", [warm, COMPARED, 2, "cls", True])
            time.sleep(5)  # the dial's background scoring of its presets
            for name, sessions in (("quiet", 0), ("loaded", 1), ("spread", args.heavy_sessions)):
                rss_before = rss_mb(process.pid)
                begin = time.perf_counter()
                for i in range(sessions):  # the H calls split as evenly as they go
                    depth = args.heavy // sessions + (i < args.heavy % sessions)
                    heavies.append(Heavy(url, ids, folder, depth, catalog.DEFAULT_MODEL, (len(gates), len(gates[0])),
                                         seed=500_000 + 100_000 * (len(phases) * 10 + i)))
                    heavies[-1].start()
                if heavies:
                    print(f"{name}: {args.heavy} heavy calls joined in {sessions} session(s)", flush=True)
                light = light_run(url, ids, folder, args.model, args.light, 10_000 * (len(phases) + 1))
                wall = time.perf_counter() - begin
                phases[name] = {"light": light, "wall_s": wall, "rss_before_mb": rss_before,
                                "rss_after_mb": rss_mb(process.pid)}
                if heavies:
                    phases[name]["heavy"] = _merged([h.snapshot() for h in heavies])
                    phases[name]["heavy"]["error"] = next((repr(h.error) for h in heavies if h.error), None)
                    for h in heavies:
                        h.stop()
                    heavies = []
                print(f"{name}: {light['success']}/{light['calls']} light calls, p95 {_s(light['all']['p95_s'])} s, "
                      f"{wall:.0f} s", flush=True)
        finally:
            for h in heavies:
                h.stop()
            stop_app(process)
    numbers = report(phases, args)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "light": args.light, "heavy": args.heavy,
                                         "concurrency": args.concurrency, "cpu_count": os.cpu_count(),
                                         "phases": phases, **numbers}, indent=2))
        print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
