"""Shareable views: the page's state (model, example image, tab, block, head, query, training step, guide step) as a
URL query string, and back.

A link is hostile input like any request: every parameter is checked against what this app offers (a model it
lists, an example file it ships, a tab it has, small non-negative integers, a query it can parse) and anything else
is dropped with a sentence saying so; nothing in a link names a path on the server.

>>> link = ViewLink(model="convit_scenes", example="scene_dress.png", tab="gpsa", block=1, query="3,4")
>>> link.query_string()
'?model=convit_scenes&example=scene_dress.png&tab=gpsa&block=1&query=3%2C4'
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from urllib.parse import urlencode

from app.uploads import EXAMPLES

__all__ = ["MAX_INDEX", "ViewLink", "example_name", "example_path", "examples"]

MAX_INDEX = 100_000
"""Largest block, head, training step or guide step a link may carry (the controls clamp to the model's own)."""
_QUERY = re.compile(r"cls|center|[0-9]{1,3},[0-9]{1,3}")
_INDEX = re.compile(r"[0-9]{1,6}")  # ASCII digits only: int() would also read "٣"


@dataclass(frozen=True)
class ViewLink:
    """What a shared link restores; None leaves that part of the page as it is."""

    model: str | None = None
    example: str | None = None
    """Name of a shipped example image (`examples()`: a file in assets/examples or `<task>/<file>`)."""
    tab: str | None = None
    """A tab's id (app.ui.TABS)."""
    block: int | None = None
    """The block shown by the tab's block control (attention, GPSA, bypass, compare)."""
    head: int | None = None
    query: str | None = None
    """'cls', 'center' or 'row,col'."""
    step: int | None = None
    """Training step of the replay (the nearest snapshot is shown)."""
    guide: int | None = None
    """Step of the guided path (1-based)."""

    def query_string(self) -> str:
        """'?key=value&…' of the parts that are set (in field order), or '' when none is."""
        parts = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return f"?{urlencode(parts)}" if parts else ""

    @classmethod
    def parse(cls, params: Mapping[str, str], models: Iterable[str], tabs: Iterable[str]) -> tuple[ViewLink, list[str]]:
        """The link in URL parameters `params`, keeping only a model among `models`, a tab among `tabs`, a shipped
        example and valid numbers and query; and one sentence per part that was dropped. Unknown keys are
        ignored."""
        values, dropped = {}, []
        checks = {"model": lambda v: v in set(models), "example": lambda v: v in examples(),
                  "tab": lambda v: v in set(tabs), "query": lambda v: _QUERY.fullmatch(v) is not None}
        for f in fields(cls):
            raw = params.get(f.name)
            if raw is None:
                continue
            raw = str(raw)[:200].strip()
            if f.name in checks:
                ok, value = checks[f.name](raw), raw
            else:  # the integers: small and non-negative
                ok = _INDEX.fullmatch(raw) is not None and int(raw) <= MAX_INDEX
                value = int(raw) if ok else None
            if ok:
                values[f.name] = value
            else:
                dropped.append(f"the link's {f.name} {raw[:40]!r} is not one this app offers")
        return cls(**values), dropped


@cache
def examples() -> dict[str, str]:
    """Name → SHA-256 of each shipped example image: the photos and scenes by file name, the test images that fit
    each task (petl_core.examples) as `<task>/<file>`."""
    return {p.relative_to(EXAMPLES).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(EXAMPLES.rglob("*")) if p.suffix in (".png", ".jpg") and p.is_file()}


def example_path(name: str) -> str:
    """The path of the shipped example `name` (one `examples()` lists)."""
    if name not in examples():
        raise ValueError(f"no shipped example called {name!r}")
    return str(EXAMPLES / name)


def example_name(data: bytes) -> str | None:
    """The shipped example whose file has exactly these bytes, or None (an upload cannot be put in a link)."""
    digest = hashlib.sha256(data).hexdigest()
    return next((name for name, known in examples().items() if known == digest), None)
