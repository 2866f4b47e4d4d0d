"""Process-level settings: the device to run on, and memory reuse for serving traces on CPU.

A trace keeps every block's attention alive (about 13.5 MB per image for `convit_tiny`), so each call needs
fresh memory. glibc hands large freed blocks back to the kernel and takes them again on the next call, and the
page faults cost as much as a few attention blocks (bench/trace_speed.py measures it). PyTorch's CPU tuning
guide recommends an allocator that keeps freed memory instead (jemalloc, tcmalloc); `retain_freed_memory`
gets the same effect from glibc itself. It is opt-in: the CLI and the app call it, a library import does not.

A long-running server needs two more things from glibc (measured by tests/test_reliability.py's soak): few
malloc arenas (`limit_malloc_arenas`; by default each of Gradio's worker threads may get its own, and memory freed
in one is not reused by another, so RSS creeps up with every call) and, now and then, the retained free memory
handed back (`trim_freed_memory`). What a leak raises is the memory in use (`heap_in_use`): RSS also holds the
free memory glibc keeps and cannot return, which wanders by a hundred MB or more from call to call.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["heap_in_use", "limit_malloc_arenas", "resolve_device", "retain_freed_memory", "trim_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _glibc():
    """glibc as a ctypes library, or None where the C library is another (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def retain_freed_memory(threshold_bytes: int = 256 << 20) -> bool:
    """Ask glibc to keep up to `threshold_bytes` of freed heap and to serve large blocks from it.

    Returns True when applied, False where the C library is not glibc (macOS, Windows, musl).
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap_limit = min(threshold_bytes, 32 << 20)  # glibc caps the mmap threshold at 32 MB on 64-bit
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_limit)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, threshold_bytes))


def limit_malloc_arenas(count: int = 2) -> bool:
    """At most `count` glibc malloc arenas for the threads created from now on (as MALLOC_ARENA_MAX does); False
    where the C library is not glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, count))


def trim_freed_memory() -> bool:
    """Hand the free memory glibc keeps back to the kernel (malloc_trim); False where that is not possible."""
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_in_use() -> int | None:
    """Bytes of memory this process has allocated and not freed, over every malloc arena and the blocks glibc
    mapped on their own (mallinfo2: uordblks + hblkhd); None where the C library is not glibc 2.33 or later."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:1' as given.

    Raises:
        ValueError: CUDA was asked for and there is none.
    """
    import torch  # (here, not above: the rest of this module is torch-free, and the app sets it before torch loads)

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no CUDA device is available")
    return device
