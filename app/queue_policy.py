"""What Gradio's queue takes from one caller, bounded, and the lane each call waits in (for Gradio 6.31's
`queueing.Queue`; the attributes read here are checked by tests/test_reliability.py against the installed Gradio).

Gradio keeps, per session hash (any string the caller sends, any length): the session's state (`state_holder`,
created by the join itself), the ids of its events until their results are read (`pending_event_ids_session`,
never emptied for a caller who never opens the event stream, or who calls `/gradio_api/call/<name>` and never
reads it) and their messages with the results (`pending_messages_per_session`, 2,000 sessions). It answers an event
number it does not have with a 500 and a logged traceback. And every call waits in one FIFO per concurrency group,
so one caller's twenty slow calls delay everybody. `install(demo, concurrency)` (after `demo.queue()`) puts every
event in a lane and wraps the queue's `push` (every join, from the page or over REST) so that:

- a session hash must be short and plain (`SESSION_HASH`; Gradio's page makes 11 characters, its Python client 36),
  and the event number one the app has: else one sentence, 400;
- a session holds at most MAX_PENDING_PER_SESSION events whose results it has not read, and a caller at most
  MAX_HEAVY_PER_CALLER heavy events queued or running (a caller: its session, or its address for the session-less
  REST route);
- the results of a session nobody has read for ABANDONED_S seconds are dropped with its entries (its state stays
  in Gradio's `state_holder`, 128 sessions: app.py's SESSIONS_KEPT), and beyond MAX_SESSIONS sessions holding
  entries the oldest idle ones are;
- each lane serves callers in turn (round robin), so a caller's twentieth call waits behind everyone's first;
- three lanes, each waiting only behind its own kind: light calls (the numbers a page draws its views from, an
  analysis, an answer already computed: ~0.01-0.2 s), figures of one image the server draws (handlers marked
  `@drawn`, for REST callers and `--server-drawn` pages: ~0.2-1 s) and heavy ones (marked `@slow`: seconds). A
  class whose pages draw their own views then never waits behind anyone's figures (bench/classroom.py).
"""
from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable

import gradio as gr

__all__ = ["ABANDONED_S", "DRAWN", "HEAVY", "LIGHT", "MAX_HEAVY_PER_CALLER", "MAX_PENDING_PER_SESSION", "MAX_SESSIONS",
           "SESSION_HASH", "caller_of", "drawn", "install", "lane_of", "slow"]

LIGHT, DRAWN, HEAVY = "light", "drawn", "heavy"
SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_PENDING_PER_SESSION = 16
MAX_HEAVY_PER_CALLER = 4
MAX_SESSIONS = 256
ABANDONED_S = 120.0
"""Unread results older than this are dropped (a page reads its results within a second)."""
_SWEEP_EVERY_S = 5.0


def slow(fn: Callable) -> Callable:
    """Mark a handler as heavy: it takes seconds on 2 CPU cores (the dial's probe scoring, a comparison of models,
    the atlas, the replay, an export drawing every figure of its view at print resolution)."""
    fn.lane = HEAVY
    return fn


def drawn(fn: Callable) -> Callable:
    """Mark a handler that draws figures of one image on the server (matplotlib: 0.2-1 s on 2 CPU cores), which a
    page that draws the view itself never asks for."""
    fn.lane = DRAWN
    return fn


def lane_of(fn: Callable | None) -> str:
    """The lane of a handler (wrappers made with functools.wraps keep the mark)."""
    return getattr(fn, "lane", LIGHT)


def caller_of(session_hash: str | None, request) -> str:
    """Who a call comes from, for fairness: the session the caller named, else its address (the REST route
    `/gradio_api/call/<name>` names no session: each call would be a caller of its own). Behind a proxy (a Space)
    the address is the last one X-Forwarded-For lists, the one the proxy saw (the others are the caller's word)."""
    if session_hash:
        return f"session:{session_hash}"
    forwarded = request.headers.get("x-forwarded-for", "") if request is not None else ""
    host = forwarded.split(",")[-1].strip() or (request.client.host if request is not None and request.client else "")
    return f"address:{host or 'unknown'}"


class _Policy:
    """The wrapped push of one queue, and what it remembers: when each session last joined."""

    def __init__(self, demo: gr.Blocks) -> None:
        self.demo, self.queue = demo, demo._queue
        self.push = self.queue.push
        self.joined: dict[str, float] = {}
        self.swept = 0.0

    async def __call__(self, body, request, username):
        session = body.session_hash
        if session is not None and not SESSION_HASH.fullmatch(str(session)):
            return False, "The session id must be 1-64 letters, digits, '-' or '_'.", "error"
        fn = self.demo.fns.get(body.fn_index) if isinstance(body.fn_index, int) else None
        if fn is None:
            return False, "This app has no event with that number: the API page lists its endpoints.", "error"
        self._sweep()
        queue = self.queue
        if session is not None:
            pending = queue.pending_event_ids_session.get(session, ())
            if len(pending) >= MAX_PENDING_PER_SESSION:
                return False, (f"This session has {len(pending)} results waiting to be read; read them (its event "
                               "stream) before asking for more."), "error"
        caller, lane = caller_of(session, request), fn.concurrency_id
        if lane == HEAVY:
            mine = sum(1 for e in list(queue.event_ids_to_events.values())
                       if getattr(e, "caller", None) == caller and e.concurrency_id == HEAVY)
            if mine >= MAX_HEAVY_PER_CALLER:
                return False, (f"You have {mine} slow computations (dial, compare, atlas, replay or export) waiting "
                               "or running; wait for one to finish."), "error"
        success, event_id, state = await self.push(body=body, request=request, username=username)
        if success:
            event = queue.event_ids_to_events.get(event_id)
            if event is not None:
                event.caller = caller
                self.joined[event.session_hash] = time.monotonic()
                waiting = queue.event_queue_per_concurrency_id[event.concurrency_id].queue
                if event in waiting:
                    self._take_turns(waiting)
                else:  # answered at the join from a shared answer (app.answers): Gradio leaves it in its table
                    queue.event_ids_to_events.pop(event_id, None)
        return success, event_id, state

    def _sweep(self) -> None:
        """Forget the sessions with no call queued or running whose last join is ABANDONED_S old, and beyond
        MAX_SESSIONS such sessions the oldest ones: their unread results and ids. (At most max_queue sessions have
        calls queued, so the cap never refuses anyone; synchronous, on the server's event loop like every other
        access to these structures.)"""
        queue, now = self.queue, time.monotonic()
        if now - self.swept < _SWEEP_EVERY_S and len(queue.pending_event_ids_session) < MAX_SESSIONS:
            return
        self.swept, active = now, queue.event_ids_to_events
        idle = [(self.joined.setdefault(session, now), session)
                for session, ids in list(queue.pending_event_ids_session.items()) if not any(i in active for i in ids)]
        idle.sort()
        excess = len(queue.pending_event_ids_session) - MAX_SESSIONS + 1
        for rank, (joined, session) in enumerate(idle):
            if rank < excess or now - joined > ABANDONED_S:
                queue.pending_event_ids_session.pop(session, None)
                queue.pending_messages_per_session.pop(session, None)
        for session in [s for s in self.joined if s not in queue.pending_event_ids_session]:
            del self.joined[session]

    @staticmethod
    def _take_turns(events: list) -> None:
        """Reorder a lane's waiting events in place so that callers take turns: each caller's first, then each
        one's second, ... (stable: a caller's own calls keep their order)."""
        seen: Counter[str] = Counter()
        ranks = {}
        for event in events:
            caller = getattr(event, "caller", event.session_hash)
            ranks[id(event)] = seen[caller]
            seen[caller] += 1
        events.sort(key=lambda e: ranks[id(e)])


def install(demo: gr.Blocks, concurrency: int) -> gr.Blocks:
    """Put each event of `demo` in its lane (light: `concurrency` at once; drawn and heavy: half of it each, at least
    one) and the queue's push behind the policy above. Call after `demo.queue()`, which makes the queue."""
    for block_fn in demo.fns.values():
        block_fn.concurrency_id = lane_of(block_fn.fn)
        block_fn.concurrency_limit = concurrency if block_fn.concurrency_id == LIGHT else max(1, concurrency // 2)
    if not isinstance(demo._queue.push, _Policy):
        demo._queue.push = _Policy(demo)
    return demo
