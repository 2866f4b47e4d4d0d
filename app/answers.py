"""Answers that are the same for everyone, computed once and shared by every caller (a class following the guided
path asks the same questions of the same example scene).

A view marked `@shares(key)` answers its endpoints from `ANSWERS` (`app.guard` and `app.tabs.common.wire_page` wrap
what they register with `ANSWERS.answering`): `key(*args)` says what its outputs depend on (the model, the image's
content, the query, block, step, ...), or None for a call not to share. The outputs are kept as Gradio sends them: a
figure becomes `PlotData` once (a matplotlib figure's image encoded once, a plotly figure's JSON), so a repeat costs
no drawing and no encoding. The cache is an LRU bounded in bytes.

A repeat is also answered without waiting in the queue. Gradio 6.31 probes a function that has a `cache`
attribute when its call is joined (`queueing.Queue.push`, inside `gradio.caching.ProbeCache`): the function runs at
once with the probe flag set, and a miss raises `CacheMissError`, after which the call is queued as usual.
(`app.queue_policy` drops the events Gradio answers this way from its table of live events: Gradio leaves them.)
"""
from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import gradio as gr
import numpy as np
from gradio.caching import CacheMissError, _probe_mode_active
from gradio.components.plot import PlotData
from PIL import Image

from petl_core.catalog import file_sha256

__all__ = ["ANSWERS", "MAX_BYTES", "SharedAnswers", "by_image_and_inputs", "by_inputs", "content_key", "shares"]

MAX_BYTES = 128 * 2**20
"""Bytes of answers kept by default (app.py --answers-mb; a view's answer is 0.05-2 MB: a figure's image or plotly
JSON and its numbers)."""

def figure_output(**kwargs: Any) -> gr.Plot:
    """The app's figure component: figures sent as PNG. Gradio's default, WebP, is lossy: it moved a map's colours
    by up to 181 of 255 at the panels' edges (2.3 on average), and it encodes slower than PNG here."""
    return gr.Plot(format="png", **kwargs)


_PLOT = figure_output(render=False)  # every figure of the app goes through figure_output: its postprocess is theirs
_hashes: OrderedDict[tuple, str] = OrderedDict()
_hashes_lock = threading.Lock()


def content_key(path: str | None) -> str | None:
    """The SHA-256 of the file at `path` (remembered by path, size and modification time), or None when there is no
    such file (the view then says why, unshared)."""
    if not path or not isinstance(path, str):
        return None
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    stamp = (path, info.st_size, info.st_mtime_ns)
    with _hashes_lock:
        if stamp in _hashes:
            return _hashes[stamp]
    digest = file_sha256(path)  # (a checked upload: app.uploads bounds its size)
    if digest is None:  # gone since the stat
        return None
    with _hashes_lock:
        _hashes[stamp] = digest
        while len(_hashes) > 4096:
            _hashes.popitem(last=False)
    return digest


def _plain(values) -> str:
    """The inputs that make an answer, as text: Gradio's per-call helpers (progress, request) left out."""
    return repr([v for v in values if not isinstance(v, (gr.Progress, gr.Request))])


def shares(key: Callable[..., Hashable | None]) -> Callable[[Callable], Callable]:
    """Mark a view whose answers the endpoints share (`SharedAnswers.answering`): `key(*args, **kwargs)`, given the
    view's inputs, says what its answer depends on, or None for a call not to share. Called from Python, the view
    is unchanged (its figures stay figures)."""
    def mark(fn: Callable) -> Callable:
        fn.shared_key = key
        return fn

    return mark


def by_inputs(*args, **kwargs) -> tuple:
    """The key of a view's answer that depends on its inputs alone (a model's atlas or history)."""
    return _plain(args), _plain(sorted(kwargs.items()))


def by_image_and_inputs(image: str | None, *args, **kwargs) -> tuple | None:
    """The key of a view of an image: the image's content and the other inputs (a caller's own weights file is an
    upload at a content-addressed path: its path names it); None without a readable image."""
    digest = content_key(image)
    return None if digest is None else (digest, _plain(args), _plain(sorted(kwargs.items())))


def _as_sent(value: Any) -> Any:
    """`value` as Gradio sends it where that saves work on a repeat: figures as PlotData."""
    if type(value).__module__.startswith(("matplotlib", "plotly")):
        return _PLOT.postprocess(value)  # (closes a matplotlib figure: its memory goes now)
    return value


def _size(value: Any) -> int:
    if isinstance(value, PlotData):
        return len(value.plot)
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(_size(v) for v in value)
    if isinstance(value, (dict, str)):
        return len(json.dumps(value, default=str)) if isinstance(value, dict) else len(value)
    return sys.getsizeof(value)


class SharedAnswers:
    """An LRU of answers, bounded in bytes, shared by every caller; `hits` and `misses` count its use."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def answering(self, fn: Callable) -> Callable:
        """`fn` answering from this cache when it is marked `@shares(key)` (a function or bound method, not a
        generator); else `fn` itself. Answers are keyed by `fn` (its owner, for a method) and `key(*args)`."""
        key = getattr(fn, "shared_key", None)
        if key is None:
            return fn
        if inspect.isgeneratorfunction(fn):
            raise TypeError(f"{fn.__qualname__} answers in parts: its parts cannot be shared")
        owner = id(getattr(fn, "__self__", None))

        @functools.wraps(fn)
        def answer(*args, **kwargs):
            k = key(*args, **kwargs)
            if k is None:
                return fn(*args, **kwargs)
            k = (owner, fn.__qualname__, k)
            with self._lock:
                entry = self._entries.get(k)
                if entry is not None:
                    self._entries.move_to_end(k)
                    self.hits += 1
                    return entry[0]
            if _probe_mode_active.get():  # Gradio asks at join time: not known, so the call is queued
                raise CacheMissError
            value = fn(*args, **kwargs)
            value = tuple(_as_sent(v) for v in value) if isinstance(value, tuple) else _as_sent(value)
            self._put(k, value)
            return value

        answer.cache = self  # the mark Gradio probes for
        return answer

    def _put(self, key: Hashable, value: Any) -> None:
        size = _size(value)
        with self._lock:
            self.misses += 1
            if size > self.max_bytes // 8:  # one answer never takes most of the room
                return
            old = self._entries.pop(key, None)
            self._bytes += size - (old[1] if old else 0)
            self._entries[key] = (value, size)
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


ANSWERS = SharedAnswers()
