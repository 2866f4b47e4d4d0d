"""Inductive Bias Explorer: start the web app.

    python app.py                       # shipped models, CPU or CUDA, http://127.0.0.1:7860
    python app.py --device cpu --preload convit_fmnist deit_fmnist --port 8080 --share

Every flag has an environment variable (in brackets in --help), so a Hugging Face Space or a container configures
it without arguments. Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT are honoured.
"""
from __future__ import annotations

import argparse
import os
import sys

from app import build_demo, service
from petl_core import zoo
from petl_core.runtime import retain_freed_memory

MAX_FILE_SIZE = "20mb"


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
    parser.add_argument("--preload", nargs="*", default=(env("EXPLORER_PRELOAD") or " ".join(zoo.SHIPPED)).split(),
                        help="models to load at start [EXPLORER_PRELOAD, space-separated] (default: the shipped "
                             "ones)")
    parser.add_argument("--model", default=env("EXPLORER_MODEL", "convit_fmnist"),
                        help="model selected when the page opens [EXPLORER_MODEL]")
    parser.add_argument("--concurrency", type=int, default=int(env("EXPLORER_CONCURRENCY", "2")),
                        help="requests computed at once; the rest wait in the queue [EXPLORER_CONCURRENCY]")
    parser.add_argument("--max-queue", type=int, default=int(env("EXPLORER_MAX_QUEUE", "64")),
                        help="requests that may wait; more are refused at once [EXPLORER_MAX_QUEUE]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    retain_freed_memory()
    try:
        device = service.configure(args.device)
    except ValueError as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 2
    for name in args.preload:
        try:
            service.get_model(name)
        except Exception as e:  # a model that cannot load is reported and left out; the app still starts
            print(f"app.py: not preloading {name}: {e}", file=sys.stderr)
    print(f"Inductive Bias Explorer on {device}; preloaded: {', '.join(args.preload) or 'nothing'}", flush=True)
    demo = build_demo(default_model=args.model)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.max_queue)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_FILE_SIZE,
                footer_links=["api", "gradio", "settings"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
