"""What stands between a request and the server: one error boundary, one concurrency limit, a drain on shutdown.

`guard(demo, concurrency)` wraps every event of a built app once:

- **errors**: a failure a user can cause (bad image, unfitting or non-finite weights, offline hub, a value out of
  range) leaves as `gr.Error` with one sentence; anything else is logged here with its traceback and reaches the
  caller as one sentence with a reference to the log line, never the traceback or a server path. Every input's
  preprocessing is wrapped too: any file path it carries must be an upload (`app.uploads`), and Gradio's own checks
  (data models, dropdown choices, slider ranges) never answer with a bare "Error". Messages are cut to a readable
  length (a 1 MB input is not echoed back) and their HTML characters escaped;
- **concurrency**: every event joins one concurrency group, so `concurrency` computations run at once in the
  whole app (Gradio's default is a limit per event);
- **opening**: a `Flight(opened=False)` holds every computation until `Flight.open()` (app.py serves the page
  first and opens once torch and the models' code are imported), so an early request waits rather than fails;
- **drain**: `Flight.drain(timeout)` refuses new computations and waits for those in flight, for SIGTERM
  handlers;
- **bodies**: `BodyLimit` (ASGI middleware) refuses request bodies over MAX_BODY_BYTES before they are read.
"""
from __future__ import annotations

import functools
import html
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gradio as gr
from gradio.exceptions import InvalidPathError
from pydantic import ValidationError

from app.uploads import MAX_WEIGHTS_BYTES, NOT_UPLOADED, check_paths
from petl_core.errors import CheckpointError, HubUnavailableError, ImageError

__all__ = ["MAX_BODY_BYTES", "MAX_MESSAGE", "BodyLimit", "Flight", "guard", "shorten", "user_errors"]

MAX_MESSAGE = 300
"""Longest error message sent to a caller, in characters."""
MAX_BODY_BYTES = 4 * 2**20
"""Largest request body outside the upload route (the app's JSON inputs are a few hundred bytes)."""
CONCURRENCY_GROUP = "compute"

log = logging.getLogger("explorer")


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` on one line, its middle cut when longer than `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else f"{text[:limit * 2 // 3]} … {text[-limit // 3:]}"


def _error(text: str, title: str = "Error") -> gr.Error:
    """The gr.Error a caller receives: one short line, with the HTML characters of any echoed input escaped (the
    page renders messages as HTML); expected, so Gradio prints no traceback for it."""
    error = gr.Error(html.escape(shorten(text), quote=False), title=title, print_exception=False)
    error.final = True  # outer boundaries pass it on as it is
    return error


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the failures a user can cause into a gr.Error with their message; log and hide everything else."""
    try:
        yield
    except gr.Error as e:
        if getattr(e, "final", False):
            raise
        raise _error(e.message, e.title) from None
    except ImageError as e:
        raise _error(f"This image cannot be used: {e}.") from None
    except HubUnavailableError as e:
        raise _error(str(e)) from None
    except CheckpointError as e:
        raise _error(f"Those weights cannot be used: {e}") from None
    except MemoryError:
        log.exception("out of memory")
        raise _error("The server ran out of memory for this request; try a smaller image or model.") from None
    except Exception:  # a bug, not the user's doing: the details stay in the server's log
        reference = uuid.uuid4().hex[:8]
        log.exception("request failed [%s]", reference)
        raise _error(f"Something went wrong on the server (reference {reference}); the details are in its "
                     f"log.") from None


class Flight:
    """The computations running now, whether they may start yet (`opened`) and whether the server is draining
    (refusing new ones): one per app."""

    def __init__(self, opened: bool = True) -> None:
        self._condition = threading.Condition()
        self._running = 0
        self._draining = False
        self._opened = threading.Event()
        if opened:
            self._opened.set()

    def open(self) -> None:
        """Let computations start; those that came before wait until now."""
        self._opened.set()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count a computation as running, once the flight is open; refuse it once the server is draining."""
        self._opened.wait()
        with self._condition:
            if self._draining:
                raise _error("The server is restarting; try again in a minute.")
            self._running += 1
        try:
            yield
        finally:
            with self._condition:
                self._running -= 1
                self._condition.notify_all()

    def drain(self, timeout: float) -> int:
        """Refuse new computations (those waiting for the flight to open too) and wait up to `timeout` seconds for
        those running; returns how many still run."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._draining = True
            self._opened.set()  # (the waiting ones are refused now, not held until the process ends)
            while self._running and time.monotonic() < deadline:
                self._condition.wait(deadline - time.monotonic())
            return self._running


def _guarded(fn: Callable, flight: Flight) -> Callable:
    if inspect.isgeneratorfunction(fn):  # a view that answers in parts: Gradio streams it only if it sees a generator
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            with flight.running(), user_errors():
                yield from fn(*args, **kwargs)

        return stream

    @functools.wraps(fn)  # keeps the signature Gradio reads (gr.Progress, gr.SelectData parameters)
    def call(*args, **kwargs):
        with flight.running(), user_errors():
            return fn(*args, **kwargs)

    return call


def _guarded_preprocess(component: gr.components.Component) -> None:
    preprocess = component.preprocess
    label = component.label or type(component).__name__

    def checked(payload):
        with user_errors():
            check_paths(payload, MAX_WEIGHTS_BYTES)  # any input may carry a path, even a display-only image
            try:
                return preprocess(payload)
            except gr.Error:
                raise
            except (ValueError, TypeError, KeyError, AttributeError):  # e.g. a text where a slider takes a number
                raise gr.Error(f"The value given for '{label}' is not one this input accepts.") from None

    component.preprocess = checked


def _guarded_validation(demo: gr.Blocks) -> None:
    """Gradio validates file inputs against their data model before any preprocess (an image given as a number,
    a file without its `meta` marker) and answers a failure with a bare 'Error': name the problem instead."""
    preprocess_data = demo.preprocess_data

    async def checked(*args, **kwargs):
        try:
            return await preprocess_data(*args, **kwargs)
        except gr.Error as e:
            if getattr(e, "final", False):
                raise
            raise _error(e.message, e.title) from None
        except InvalidPathError:  # Gradio's own upload-folder check, for files sent with their `meta` marker
            raise _error(NOT_UPLOADED) from None
        except ValidationError as e:
            problem = e.errors()[0].get("msg", "").rstrip(".") if e.errors() else ""
            raise _error(f"An input has the wrong form for this endpoint ({e.title}): {problem}. The API page "
                         f"lists what each input takes.") from None

    demo.preprocess_data = checked


def guard(demo: gr.Blocks, concurrency: int, flight: Flight | None = None) -> gr.Blocks:
    """Put every event of `demo` behind the error boundary and in one concurrency group of `concurrency`; `flight`
    (a fresh one by default) counts its computations, for a drain."""
    flight = flight or Flight()
    _guarded_validation(demo)
    inputs = {}
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and not getattr(block_fn.fn, "_guarded", False):
            block_fn.fn = _guarded(block_fn.fn, flight)
            block_fn.fn._guarded = True
        block_fn.concurrency_id = CONCURRENCY_GROUP
        block_fn.concurrency_limit = concurrency
        inputs.update({id(c): c for c in block_fn.inputs})
    for component in inputs.values():
        if hasattr(component, "preprocess") and not getattr(component.preprocess, "_guarded", False):
            _guarded_preprocess(component)
            component.preprocess._guarded = True
    return demo


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413 before it is held in memory (Gradio
    reads JSON bodies whole; its upload route has its own limit, `launch(max_file_size=...)`, and is let through)."""

    def __init__(self, app, max_bytes: int, exempt: tuple[str, ...] = ("/gradio_api/upload",)) -> None:
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # a chunked body without a length: stop reading it
                raise ValueError("request body over the limit")
            return message

        return await self.app(scope, counted, send)

    async def _refuse(self, send) -> None:
        body = f'{{"error": "request body over {self.max_bytes // 2**20} MiB"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
