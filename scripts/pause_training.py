"""Benchmarks measure on a quiet machine: the project's long training runs (experiments.make_assets, resumed across
sessions from their checkpoints) are paused for a bench's run and always resumed after it."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TRAINING", "paused", "stop_on_sigterm"]

TRAINING = "experiments.make_assets"


@contextmanager
def paused(enabled: bool) -> Iterator[list[int]]:
    """The running training processes SIGSTOPped for the block, and SIGCONTed after it whatever happens (processes
    someone else had stopped already are left alone); yields their ids."""
    pids: list[int] = []
    if enabled:
        for pid in map(int, subprocess.run(["pgrep", "-f", TRAINING], capture_output=True, text=True).stdout.split()):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if pid not in (os.getpid(), os.getppid()) and state != "T":
                    os.kill(pid, signal.SIGSTOP)
                    pids.append(pid)
            except OSError as e:
                print(f"could not pause {pid}: {e}")
        print(f"paused {TRAINING} (SIGSTOP): pids {pids or 'none running'}", flush=True)
    else:
        print(f"--no-pause: {TRAINING} runs left running", flush=True)
    try:
        yield pids
    finally:
        if pids:  # a second Ctrl-C or SIGTERM must not leave them stopped
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            resumed = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                    resumed.append(pid)
                except ProcessLookupError:
                    pass
            print(f"resumed {TRAINING} (SIGCONT): pids {resumed}", flush=True)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def stop_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so that `paused` resumes the runs."""
    def interrupt(signum: int, _frame) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
