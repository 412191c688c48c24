"""Region masks at any resolution, from boxes on the 90 x 90 grid (OMOST.md section 3).

Resizing is torch's ``nearest-exact``, reproduced with its float32 arithmetic so masks here
equal the ones Omost computes with ``interpolate(..., mode='nearest-exact')``.
"""

from __future__ import annotations

import numpy as np

from omostc.spec.tables import GRID

Rect = tuple[int, int, int, int]  # (top, bottom, left, right)


def nearest_exact_index(out_size: int, in_size: int = GRID) -> np.ndarray:
    """Source index of each output index: floor((i + 0.5) * in / out), in float32, clamped."""
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor((np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def nearest_index(out_size: int, in_size: int) -> np.ndarray:
    """torch's legacy ``nearest``: floor(i * in / out), in float32, clamped."""
    scale = np.float32(in_size) / np.float32(out_size)
    idx = np.floor(np.arange(out_size, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, in_size - 1)


def grid_mask(rect: Rect) -> np.ndarray:
    """The 90 x 90 boolean mask of a box."""
    top, bottom, left, right = rect
    m = np.zeros((GRID, GRID), dtype=bool)
    m[top:bottom, left:right] = True
    return m


def box_mask(rect: Rect, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask: the grid mask resized with nearest-exact."""
    return grid_mask(rect)[np.ix_(nearest_exact_index(height), nearest_exact_index(width))]


def feathered_box_mask(rect: Rect, feather: float, height: int, width: int) -> np.ndarray:
    """Float32 (height, width) mask that ramps from 0 to 1 over ``feather`` grid cells inside
    each box edge that lies inside the canvas (edges on the canvas border stay hard).
    With ``feather == 0`` it equals ``box_mask`` as 0/1 values."""
    hard = box_mask(rect, height, width).astype(np.float32)
    if feather <= 0:
        return hard
    top, bottom, left, right = rect
    ys = (np.arange(height, dtype=np.float64) + 0.5) * (GRID / height)
    xs = (np.arange(width, dtype=np.float64) + 0.5) * (GRID / width)
    inf = np.full_like(ys, np.inf)
    dy = np.minimum(ys - top if top > 0 else inf, bottom - ys if bottom < GRID else inf)
    infx = np.full_like(xs, np.inf)
    dx = np.minimum(xs - left if left > 0 else infx, right - xs if right < GRID else infx)
    ramp = np.clip(np.minimum(dy[:, None], dx[None, :]) / feather, 0.0, 1.0)
    return (hard * ramp).astype(np.float32)
