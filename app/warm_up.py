"""What a class asks first, computed when the server starts: the guided path opens the same models and examples for
every student, so their first answers are computed once, before anyone asks, and shared (app.answers)."""
from __future__ import annotations

import logging
import threading

from app.guide import STEPS
from app.links import example_path
from app.tabs.common import Shared

__all__ = ["warm_guided_path"]

log = logging.getLogger(__name__)


def warm_guided_path(shared: Shared) -> list[str]:
    """Run each tab's `Shared.warm_ups` for every model and example the guided path opens (the attention data, the
    histories and the atlas put in the shared answers, the dial's presets scored) and wait for them. A part that
    fails is logged and left to be computed when asked. Returns the models warmed."""
    opened = list(dict.fromkeys((step.view.model, step.view.example) for step in STEPS if step.view.model))
    workers = []
    for model, example in opened:
        for warm in shared.warm_ups:
            try:
                worker = warm(model, example_path(example) if example else None)
            except Exception as e:  # (the view says why when it is asked)
                log.warning("warming %s for %s: %s", getattr(warm, "__qualname__", warm), model, e)
            else:
                if isinstance(worker, threading.Thread):
                    workers.append(worker)
    for worker in workers:
        worker.join()
    return list(dict.fromkeys(model for model, _ in opened))
