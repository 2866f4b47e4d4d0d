"""Whose attention a view reads: the class token or one patch of the grid, parsed from text in one place (the
app's query box, the CLI's --query)."""
from __future__ import annotations

__all__ = ["CLS", "Query", "centre_patch", "parse_query"]

Query = str | tuple[int, int]
"""CLS, or a patch as (row, col) of the grid (row-major, row 0 at the top)."""
CLS = "cls"


def centre_patch(grid: tuple[int, int]) -> tuple[int, int]:
    """The middle patch of a (rows, cols) grid (below and right of the centre when a side is even)."""
    return grid[0] // 2, grid[1] // 2


def parse_query(text: str | None, grid: tuple[int, int]) -> Query:
    """'cls', 'class', 'class token' or nothing -> CLS; 'center' or 'centre' -> centre_patch(grid); 'row,col'
    (brackets and spaces allowed) -> (row, col). ValueError, in one sentence, for anything else or a patch
    outside the grid."""
    clean = (text or CLS).strip().lower()
    if clean in (CLS, "class", "class token"):
        return CLS
    if clean in ("center", "centre"):
        return centre_patch(grid)
    try:
        row, col = (int(v) for v in clean.strip("()").split(","))
    except ValueError:
        shown = repr(text) if len(repr(text)) <= 60 else repr(text)[:57] + "..."
        raise ValueError(f"Query {shown} is not 'cls', 'center' or 'row,col'.") from None
    if not (0 <= row < grid[0] and 0 <= col < grid[1]):
        raise ValueError(f"Patch ({row}, {col}) is outside the {grid[0]}×{grid[1]} patch grid.")
    return row, col
