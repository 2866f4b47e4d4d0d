"""Geometry of the patch grid: offsets and distances between patch tokens.

Patch token n sits at row n // cols and column n % cols (timm's row-major flattening of the patch grid).
"""
from __future__ import annotations

import torch

__all__ = ["patch_distances", "patch_offsets"]


def patch_offsets(
        grid: tuple[int, int],
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Key-minus-query offsets between all pairs of patches.

    Args:
        grid: (rows, cols) of the patch grid.

    Returns:
        (P, P, 2) tensor, P = rows * cols; [i, j] = (dx, dy) = (col_j - col_i, row_j - row_i), y pointing down.
    """
    rows, cols = grid
    r = torch.arange(rows, device=device, dtype=dtype).repeat_interleave(cols)  # (P,)
    c = torch.arange(cols, device=device, dtype=dtype).repeat(rows)  # (P,)
    dx = c[None, :] - c[:, None]
    dy = r[None, :] - r[:, None]
    return torch.stack((dx, dy), dim=-1)


def patch_distances(
        grid: tuple[int, int],
        spacing: tuple[float, float] = (1.0, 1.0),
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Euclidean distances between all pairs of patch centres.

    Args:
        grid: (rows, cols) of the patch grid.
        spacing: (height, width) of one patch in the unit wanted: (1, 1) for patches, the patch size for pixels.

    Returns:
        (P, P) tensor of distances.
    """
    offsets = patch_offsets(grid, device=device, dtype=dtype)
    scaled = offsets * torch.tensor((spacing[1], spacing[0]), device=device, dtype=dtype)
    return scaled.norm(dim=-1)
