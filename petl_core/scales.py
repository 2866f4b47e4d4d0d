"""The fixed colour scales every attention map shares (figures, the app's plots and its in-page hover), torch-free.

Fixed, never fitted to a map: near-uniform attention looks flat in every view, and views compared side by side
read on the same scale.
"""
from __future__ import annotations

__all__ = ["ATTENTION_LINEAR_RANGE", "ATTENTION_LOG_RANGE", "attention_colour_label"]

ATTENTION_LOG_RANGE = (1e-3, 1.0)
"""Colour range of every attention map on a log scale: from 0.001 (weaker weights take the bottom colour) to 1 (all of
a query's attention on one key). Fixed, never fitted to the map: near-uniform attention (1/P on every key, 0.016 on
an 8×8 grid) is one flat colour, in the grid, the enlarged map and every other view alike."""
ATTENTION_LINEAR_RANGE = (0.0, 1.0)
"""Colour range of every attention map on a linear scale (fixed, as ATTENTION_LOG_RANGE)."""


def attention_colour_label(log_scale: bool) -> str:
    """The title of an attention map's colour bar, with its fixed range."""
    low, high = ATTENTION_LOG_RANGE if log_scale else ATTENTION_LINEAR_RANGE
    return f"attention weight ({'log' if log_scale else 'linear'} scale, fixed {low:g} to {high:g})"
