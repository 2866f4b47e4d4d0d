"""The app's own temporary files (exports, sketches), in one folder swept on a schedule, so disk use stays bounded;
the same schedule hands the free memory glibc keeps back to the kernel.

Gradio copies every file a handler returns into its cache, which its `delete_cache` setting empties on a schedule
(uploads included), but it leaves the handler's originals and the emptied per-file folders of the cache behind:
`start_sweeper` removes both once they are older than the files' time to live. Gradio's schedule is also a single
task that dies for good the first time a request adds a file while it walks its file sets ("Set changed size during
iteration", seen under concurrent load): the cache then grows without bound. So each sweep also runs Gradio's own
deletion, and a sweep that meets that race simply tries again next time.
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
from gradio.route_utils import delete_files_created_by_app
from gradio.utils import get_upload_folder

from petl_core.runtime import trim_freed_memory

__all__ = ["folder", "start_sweeper", "sweep"]

def _root() -> Path:
    """The scratch root, in the temp dir of the moment (tests and the app set TMPDIR)."""
    return Path(tempfile.gettempdir()) / "inductive-bias-explorer"


def folder(prefix: str) -> Path:
    """A fresh folder for one request's files, under the swept scratch root."""
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=root))


def sweep(age_s: float, blocks: gr.Blocks | None = None) -> int:
    """Delete scratch entries older than `age_s` seconds, the cached files of `blocks` that old (Gradio's own rule,
    which spares examples) and the empty folders Gradio's cache leaves behind; returns how many scratch entries and
    folders went."""
    removed = 0
    if blocks is not None:
        try:
            delete_files_created_by_app(blocks, int(age_s))
        except RuntimeError:  # a request added a file meanwhile; the next sweep tries again
            pass
    cutoff = time.time() - age_s
    scratch = _root()
    for entry in scratch.iterdir() if scratch.is_dir() else []:
        try:
            if entry.lstat().st_mtime < cutoff:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                removed += 1
        except OSError:  # removed meanwhile, or not ours to remove: the next sweep tries again
            continue
    cache = Path(get_upload_folder())
    for entry in cache.iterdir() if cache.is_dir() else []:
        try:
            if entry.is_dir() and entry.lstat().st_mtime < cutoff and not any(entry.iterdir()):
                entry.rmdir()
                removed += 1
        except OSError:  # refilled or removed meanwhile
            continue
    return removed


def start_sweeper(age_s: float, blocks: gr.Blocks | None = None) -> threading.Thread:
    """Sweep every age_s / 4 seconds (at least once a second) in a daemon thread, then trim the freed heap."""
    def run() -> None:
        while True:
            time.sleep(max(1.0, age_s / 4))
            sweep(age_s, blocks)
            trim_freed_memory()

    thread = threading.Thread(target=run, name="scratch-sweeper", daemon=True)
    thread.start()
    return thread
