"""What stands between a request and the server: one error boundary, a drain on shutdown, bounded bodies.
(The lanes, the limits per caller and what Gradio's queue keeps per session: `app.queue_policy`.)

`guard(demo)` wraps every event of a built app once:

- **errors**: a failure a user can cause (bad image, unfitting or non-finite weights, offline hub, a value out of
  range) leaves as `gr.Error` with one sentence; anything else is logged here with its traceback (the same failure
  again within FAILURE_WINDOW_S only counted, then summarised in one line) and reaches the caller as one sentence
  with a reference to the log line, never the traceback or a server path. Every input's preprocessing is wrapped
  too: before Gradio's own preprocessing, every file an input names must be a local upload (`app.uploads`: a URL
  is refused there, before Gradio would download it), inputs a REST caller leaves out at the end take their
  component's default, and Gradio's own checks (data models, dropdown choices, slider ranges) never answer with a
  bare "Error"; nor does Gradio's postprocessing of the outputs. Messages are cut to a readable length (a 1 MB
  input is not echoed back) and their HTML characters escaped;
- **opening**: a `Flight(opened=False)` holds every computation until `Flight.open()` (app.py serves the page
  first and opens once torch and the models' code are imported), so an early request waits rather than fails;
- **drain**: `Flight.drain(timeout)` refuses new computations and waits for those in flight, for SIGTERM
  handlers;
- **memory**: after a heavy call (`app.queue_policy.slow`) the freed memory glibc keeps is handed back
  (`petl_core.runtime.trim_freed_memory`): a dial scoring frees a few hundred MB, which glibc otherwise kept (RSS
  wandered 200-500 MB above the memory in use over a few dozen scorings), and a Space is held to its RSS;
- **bodies**: `BodyLimit` (ASGI middleware) refuses request bodies over MAX_BODY_BYTES before they are read, and a
  client that hangs up mid-request costs one log line, not a traceback.
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
from gradio.caching import CacheMissError, _probe_mode_active
from gradio.exceptions import InvalidPathError
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from app.answers import ANSWERS
from app.queue_policy import HEAVY, lane_of
from app.uploads import MAX_WEIGHTS_BYTES, NOT_UPLOADED, check_paths
from petl_core.errors import CheckpointError, HubUnavailableError, ImageError
from petl_core.runtime import trim_freed_memory

__all__ = ["FAILURE_WINDOW_S", "MAX_BODY_BYTES", "MAX_MESSAGE", "BodyLimit", "Flight", "guard", "shorten",
           "user_errors"]

MAX_MESSAGE = 300
"""Longest error message sent to a caller, in characters."""
MAX_BODY_BYTES = 4 * 2**20
"""Largest request body outside the upload route (the app's JSON inputs are a few hundred bytes)."""
FAILURE_WINDOW_S = 60.0
"""An unexpected failure is logged with its traceback once per this many seconds; repeats are counted meanwhile."""

log = logging.getLogger("explorer")


class _Failures:
    """The unexpected failures logged lately, by kind (exception type, message, where it was raised): the first
    of a kind is logged whole; repeats within FAILURE_WINDOW_S are counted and summarised in one line when the
    kind comes again after the window, so a caller repeating a request that fails cannot flood the log."""

    def __init__(self, kinds: int = 256) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple, list] = {}  # kind -> [first time, repeats since, reference of the first]
        self._kinds = kinds

    def reference(self, error: BaseException) -> str:
        """Log `error` (or count it) and return the reference the caller's message quotes."""
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else ""
        kind = (type(error).__name__, str(error)[:200], where)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen[0] < FAILURE_WINDOW_S:
                seen[1] += 1
                return seen[2]
            reference = uuid.uuid4().hex[:8]
            if seen is not None and seen[1]:
                log.error("request failed [%s] %d more times in %.0f s (%s; the traceback was not repeated)",
                          seen[2], seen[1], now - seen[0], kind[0])
            self._seen.pop(kind, None)
            self._seen[kind] = [now, 0, reference]
            while len(self._seen) > self._kinds:
                self._seen.pop(next(iter(self._seen)))
        log.error("request failed [%s]", reference, exc_info=error)
        return reference


_failures = _Failures()


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
def _probe_misses() -> Iterator[None]:
    """In Gradio's probe of a shared answer when a call is joined (app.answers), any failure is a miss: the call is
    then queued and its failure reported the usual way (raised in the probe, it would answer the join with a 500)."""
    try:
        yield
    except CacheMissError:
        raise
    except Exception:
        if _probe_mode_active.get():
            raise CacheMissError from None
        raise


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the failures a user can cause into a gr.Error with their message; log and hide everything else."""
    try:
        yield
    except CacheMissError:  # Gradio's probe of a shared answer at join time (app.answers): not an error
        raise
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
    except RecursionError:  # an input nested thousands deep, met by a parser that recurses
        raise _error("An input is nested too deeply to be read.") from None
    except Exception as e:  # a bug, not the user's doing: the details stay in the server's log
        reference = _failures.reference(e)
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


@contextmanager
def _memory_returned(heavy: bool) -> Iterator[None]:
    """Hand the freed memory back to the kernel when a heavy call ends (however it ends)."""
    try:
        yield
    finally:
        if heavy:
            trim_freed_memory()


def _guarded(fn: Callable, flight: Flight) -> Callable:
    heavy = lane_of(fn) == HEAVY
    if inspect.isgeneratorfunction(fn):  # a view that answers in parts: Gradio streams it only if it sees a generator
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            with _memory_returned(heavy), _probe_misses(), flight.running(), user_errors():
                yield from fn(*args, **kwargs)

        return stream

    @functools.wraps(fn)  # keeps the signature Gradio reads (gr.Progress, gr.SelectData parameters)
    def call(*args, **kwargs):
        with _memory_returned(heavy), _probe_misses(), flight.running(), user_errors():
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
    """Before Gradio's own preprocessing of an event's inputs (Gradio 6.31's `Blocks.preprocess_data`): fill the
    inputs a REST caller left out at the end with their components' defaults (Gradio would refuse the call with
    "didn't receive enough input values" where its API page calls them optional), and check every file they name
    (`check_paths`): Gradio would download a URL given as a file's path, whole and into memory, before any
    component's preprocess runs. Gradio validates file inputs against their data model (an image given as a number,
    a file without its `meta` marker) and answers a failure with a bare 'Error': name the problem instead."""
    preprocess_data = demo.preprocess_data

    async def checked(block_fn, inputs, *args, **kwargs):
        with _probe_misses():
            return await _preprocessed(block_fn, inputs, *args, **kwargs)

    async def _preprocessed(block_fn, inputs, *args, **kwargs):
        try:
            if isinstance(inputs, list) and len(inputs) < len(block_fn.inputs):
                inputs = inputs + [getattr(c, "value", None) for c in block_fn.inputs[len(inputs):]]
            check_paths(inputs, MAX_WEIGHTS_BYTES)
            return await preprocess_data(block_fn, inputs, *args, **kwargs)
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
    postprocess_data = demo.postprocess_data

    async def answered(*args, **kwargs):  # an output a component cannot take: a sentence too, never a bare null
        with _probe_misses(), user_errors():
            return await postprocess_data(*args, **kwargs)

    demo.postprocess_data = answered


def guard(demo: gr.Blocks, flight: Flight | None = None) -> gr.Blocks:
    """Put every event of `demo` behind the error boundary, answering from the shared answers where its view shares
    them (app.answers); `flight` (a fresh one by default) counts its computations, for a drain."""
    flight = flight or Flight()
    _guarded_validation(demo)
    inputs = {}
    for block_fn in demo.fns.values():
        if block_fn.fn is not None and not getattr(block_fn.fn, "_guarded", False):
            block_fn.fn = _guarded(ANSWERS.answering(block_fn.fn), flight)
            block_fn.fn._guarded = True
        inputs.update({id(c): c for c in block_fn.inputs})
    for component in inputs.values():
        if hasattr(component, "preprocess") and not getattr(component.preprocess, "_guarded", False):
            _guarded_preprocess(component)
            component.preprocess._guarded = True
    return demo


class _BodyTooLarge(Exception):
    """A body without a declared length grew over the limit while read."""


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413 before it is held in memory (Gradio
    reads JSON bodies whole; its upload route has its own limit, `launch(max_file_size=...)`, and is let through)."""

    def __init__(self, app, max_bytes: int, exempt: tuple[str, ...] = ("/gradio_api/upload",)) -> None:
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limited = not scope["path"].startswith(self.exempt)
        declared = dict(scope["headers"]).get(b"content-length")
        if limited and declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(send)
        received, started = 0, False

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # a chunked body without a length: stop reading it
                raise _BodyTooLarge
            return message

        async def sending(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            return await self.app(scope, counted if limited else receive, sending)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)
        except ClientDisconnect:  # the caller hung up (e.g. mid-upload): nobody to answer, nothing to debug
            log.info("client %s hung up during %s", (scope.get("client") or ("?",))[0], scope["path"][:100])

    async def _refuse(self, send) -> None:
        body = f'{{"error": "request body over {self.max_bytes // 2**20} MiB"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
