"""Whose attention a view reads: the class token or one patch of the grid, parsed from text in one place (the
app's query box, the CLI's --query)."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CLS", "Query", "centre_patch", "parse_query"]


@dataclass(frozen=True)
class Query:
    """The class token (`patch` None) or one patch of the grid."""

    patch: tuple[int, int] | None = None
    """(row, col), row-major, row 0 at the top; None for the class token."""

    @classmethod
    def at(cls, row: int, col: int) -> Query:
        return cls((int(row), int(col)))

    @property
    def is_cls(self) -> bool:
        return self.patch is None

    @property
    def label(self) -> str:
        """'class token' or 'patch (row r, col c)', as titles say it."""
        return "class token" if self.patch is None else f"patch (row {self.patch[0]}, col {self.patch[1]})"

    @property
    def text(self) -> str:
        """'cls' or 'row,col': what `parse_query` reads back (the app's query box, JSON exports)."""
        return "cls" if self.patch is None else f"{self.patch[0]},{self.patch[1]}"


CLS = Query()


def centre_patch(grid: tuple[int, int]) -> Query:
    """The middle patch of a (rows, cols) grid (below and right of the centre when a side is even)."""
    return Query.at(grid[0] // 2, grid[1] // 2)


def parse_query(text: str | None, grid: tuple[int, int]) -> Query:
    """'cls', 'class', 'class token' or nothing -> CLS; 'center' or 'centre' -> centre_patch(grid); 'row,col'
    (brackets and spaces allowed) -> that patch. ValueError, in one sentence, for anything else or a patch outside
    the grid."""
    clean = (text or "cls").strip().lower()
    if clean in ("cls", "class", "class token"):
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
    return Query.at(row, col)
