"""Inductive Bias Explorer: start the web app.

    python app.py                       # shipped models, CPU or CUDA, http://127.0.0.1:7860
    python app.py --device cpu --preload convit_scenes_gpsa50 deit_scenes --port 8080 --share

Every flag has an environment variable (in brackets in --help), so a Hugging Face Space or a container configures
it without arguments. Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import gradio as gr
from starlette.middleware import Middleware

from app import CSS, THEME, browser_files, build_demo, queue_policy, scratch
from app.answers import ANSWERS, MAX_BYTES
from app.guard import MAX_BODY_BYTES, BodyLimit, Flight, guard
from app.service import Service
from app.ui import FILES_TTL_S
from app.uploads import MAX_WEIGHTS_BYTES
from petl_core import catalog
from petl_core.runtime import heap_in_use, limit_malloc_arenas, retain_freed_memory

SESSIONS_KEPT = 128
"""Sessions whose component state Gradio keeps (its default, 10,000, grows memory by about 0.7 MB per API call)."""
DRAIN_S = 10.0
"""On SIGTERM, computations in flight get this many seconds to finish before the server stops."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Inductive Bias Explorer: ConViT and Convpass, seen from inside.")
    parser.add_argument("--host", default=env("EXPLORER_HOST") or env("GRADIO_SERVER_NAME"),
                        help="interface to listen on [EXPLORER_HOST] (default: Gradio's, 127.0.0.1 or 0.0.0.0 on "
                             "a Space)")
    parser.add_argument("--port", type=int, default=int(env("EXPLORER_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                        help="port [EXPLORER_PORT] (default 7860)")
    parser.add_argument("--share", action="store_true", default=env("EXPLORER_SHARE", "") == "1",
                        help="also open a public gradio.live link [EXPLORER_SHARE=1] (needs internet)")
    parser.add_argument("--device", default=env("EXPLORER_DEVICE", "auto"),
                        help="auto (CUDA when present), cpu, cuda or cuda:N [EXPLORER_DEVICE]")
    parser.add_argument("--preload", nargs="*", default=(env("EXPLORER_PRELOAD") or " ".join(catalog.SHIPPED)).split(),
                        help="models to load at start [EXPLORER_PRELOAD, space-separated] (default: the shipped "
                             "ones)")
    parser.add_argument("--model", default=env("EXPLORER_MODEL") or None,
                        help=f"model selected when the page opens [EXPLORER_MODEL] (default: the hub's ConViT when the "
                             f"hub answers and it loads, else {catalog.DEFAULT_MODEL})")
    parser.add_argument("--concurrency", type=int, default=int(env("EXPLORER_CONCURRENCY", "2")),
                        help="light requests computed at once, and half as many heavy ones (at least one) beside "
                             "them; the rest wait in the queue [EXPLORER_CONCURRENCY]")
    parser.add_argument("--max-queue", type=int, default=int(env("EXPLORER_MAX_QUEUE", "64")),
                        help="requests that may wait; more are refused at once [EXPLORER_MAX_QUEUE]")
    parser.add_argument("--files-ttl", type=int, default=int(env("EXPLORER_FILES_TTL", str(FILES_TTL_S))),
                        help=f"seconds uploads and exported files are kept [EXPLORER_FILES_TTL] (default "
                             f"{FILES_TTL_S})")
    parser.add_argument("--answers-mb", type=float, default=float(env("EXPLORER_ANSWERS_MB", str(MAX_BYTES / 2**20))),
                        help=f"memory for the answers shared by every caller (app.answers) [EXPLORER_ANSWERS_MB] "
                             f"(default {MAX_BYTES / 2**20:.0f})")
    parser.add_argument("--server-drawn", action="store_true", default=env("EXPLORER_SERVER_DRAWN", "") == "1",
                        help="the server draws every view for each change, as for a browser without the in-page "
                             "path (default: the page draws the attention tab itself) [EXPLORER_SERVER_DRAWN=1]")
    parser.add_argument("--no-warm-up", action="store_true", default=env("EXPLORER_WARM_UP", "1") == "0",
                        help="do not compute the guided path's first answers at start (app.warm_up) "
                             "[EXPLORER_WARM_UP=0]")
    parser.add_argument("--memory-log", type=float, default=float(env("EXPLORER_MEMORY_LOG", "0")),
                        help="every this many seconds, print the server's resident and in-use memory "
                             "[EXPLORER_MEMORY_LOG] (default 0: never)")
    return parser.parse_args(argv)


def _log_memory(every_s: float) -> None:
    """A daemon thread that prints `memory: rss_mb=… heap_in_use_mb=…` every `every_s` seconds. A leak shows in the
    memory in use; RSS also holds the freed memory glibc keeps (petl_core.runtime)."""
    page = os.sysconf("SC_PAGE_SIZE") / 2**20

    def log() -> None:
        while True:
            with open("/proc/self/statm") as statm:
                rss = int(statm.read().split()[1]) * page
            in_use = heap_in_use()
            shown = "unknown" if in_use is None else f"{in_use / 2**20:.1f}"
            print(f"memory: rss_mb={rss:.1f} heap_in_use_mb={shown}", flush=True)
            time.sleep(every_s)

    if every_s > 0 and os.path.exists("/proc/self/statm"):
        threading.Thread(target=log, name="memory-log", daemon=True).start()


def _stop_on_sigterm(demo: gr.Blocks, flight: Flight) -> None:
    """SIGTERM (a Space restarting, `docker stop`): refuse new work, let computations in flight finish for up to
    DRAIN_S seconds and their results reach the callers, then close."""
    def stop(signum, frame) -> None:
        deadline = time.monotonic() + DRAIN_S
        left = flight.drain(DRAIN_S)
        while any(demo._queue.active_jobs) and time.monotonic() < deadline:  # results are sent after the call
            time.sleep(0.05)
        time.sleep(0.5)  # the event streams flush the last messages
        print(f"app.py: stopping on signal {signum}; {left} computations cut short", file=sys.stderr, flush=True)
        demo.close()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)


def _preload(service: Service, names: list[str], served: float, warm_up: Callable[[], list[str]] | None) -> None:
    """Load `names` once the page is served (`served`: its time.perf_counter()), then `warm_up` (the guided path's
    first answers, app.warm_up); the page itself needs only the model it opens with: a request for a model still
    loading waits for that load (Service.get_model), not for the others."""
    preloaded = []
    for name in names:
        try:
            service.get_model(name)
            preloaded.append(name)
        except Exception as e:  # a model that cannot load is reported and left out; the app keeps serving
            print(f"app.py: not preloading {name}: {getattr(e, 'message', e)}", file=sys.stderr)
    warmed = ""
    if warm_up is not None:
        started = time.perf_counter()
        warmed = f"; the guided path's first answers ({', '.join(warm_up())}) in {time.perf_counter() - started:.1f} s"
    print(f"preloaded: {', '.join(preloaded) or 'nothing'}{warmed}; {time.perf_counter() - served:.1f} s after the "
          "page was served", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    retain_freed_memory()
    limit_malloc_arenas(2)  # before Gradio starts its worker threads
    try:
        service = Service(args.device)
    except ValueError as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 2
    # the error boundary (app.guard) logs failures with their traceback; other libraries' chatter stays off
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    known = [e.name for e in service.model_entries()]
    if args.model and args.model not in known:
        print(f"app.py: --model {args.model!r} is not a model of this app; it has {', '.join(known)}", file=sys.stderr)
        return 2
    model = args.model or service.default_model()  # (a hub default is loaded by then, with torch)
    print(f"Inductive Bias Explorer opens with {model}", flush=True)
    flight = Flight(opened=False)  # the page is served first; computations wait until the backend is imported
    ANSWERS.max_bytes = int(args.answers_mb * 2**20)
    demo = guard(build_demo(service, default_model=model, files_ttl_s=args.files_ttl, in_page=not args.server_drawn),
                 flight)
    queue_policy.install(demo.queue(max_size=args.max_queue), args.concurrency)
    scratch.start_sweeper(args.files_ttl, demo)
    _stop_on_sigterm(demo, flight)
    _log_memory(args.memory_log)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_WEIGHTS_BYTES,
                theme=THEME, css=CSS,
                footer_links=["api", "gradio", "settings"], state_session_capacity=SESSIONS_KEPT,
                app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)],
                            "routes": browser_files.routes(service)},
                prevent_thread_lock=True)
    served = time.perf_counter()
    try:
        device = service.start()
    except Exception as e:  # a broken torch or timm install: say so and stop, rather than hold every request
        print(f"app.py: cannot compute: importing torch, timm and the models' code failed ({type(e).__name__}: {e})",
              file=sys.stderr, flush=True)
        demo.close()
        return 1
    flight.open()
    print(f"computing on {device}: torch and the models' code imported {time.perf_counter() - served:.1f} s after "
          "the page was served", flush=True)
    _preload(service, args.preload, served, None if args.no_warm_up else demo.warm_up)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
