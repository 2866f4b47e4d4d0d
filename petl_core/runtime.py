"""Process-level settings: the device to run on, and memory reuse for serving traces on CPU.

A trace keeps every block's attention alive (about 13.5 MB per image for `convit_tiny`), so each call needs
fresh memory. glibc hands large freed blocks back to the kernel and takes them again on the next call, and the
page faults cost as much as a few attention blocks (bench/trace_speed.py measures it). PyTorch's CPU tuning
guide recommends an allocator that keeps freed memory instead (jemalloc, tcmalloc); `retain_freed_memory`
gets the same effect from glibc itself. It is opt-in: the CLI and the app call it, a library import does not.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

import torch

__all__ = ["resolve_device", "retain_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory(threshold_bytes: int = 256 << 20) -> bool:
    """Ask glibc to keep up to `threshold_bytes` of freed heap and to serve large blocks from it.

    Returns True when applied, False where the C library is not glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mmap_limit = min(threshold_bytes, 32 << 20)  # glibc caps the mmap threshold at 32 MB on 64-bit
    return bool(mallopt(_M_MMAP_THRESHOLD, mmap_limit)) and bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cpu', 'cuda', 'cuda:1' as given.

    Raises:
        ValueError: CUDA was asked for and there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but no CUDA device is available")
    return device
