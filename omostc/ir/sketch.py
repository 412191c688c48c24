"""The colour sketch (OMOST.md section 4) and its blurred, image-sized form (section 7)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from omostc.ir.masks import Rect, nearest_index
from omostc.spec.tables import GRID

SKETCH_BLUR = 40  # reflect padding; the box filter is 2 * 40 + 1 = 81 cells wide


def color_sketch(background: tuple[int, int, int],
                 boxes: Iterable[tuple[Rect, tuple[int, int, int]]]) -> np.ndarray:
    """(90, 90, 3) uint8: the background colour, then each box in layer order blended 70/30.

    The arithmetic is Omost's to the bit: the blend is computed in float64 (a uint8 colour
    times a Python float) and stored into a float32 image; the result is clipped and truncated.
    """
    image = np.zeros((GRID, GRID, 3), dtype=np.float32) + np.array([[background]], dtype=np.uint8)
    for (top, bottom, left, right), color in boxes:
        c = np.array([[color]], dtype=np.uint8)
        image[top:bottom, left:right] = 0.7 * c + 0.3 * image[top:bottom, left:right]
    return image.clip(0, 255).astype(np.uint8)


def _box_mean(padded: np.ndarray, k: int) -> np.ndarray:
    """Mean over every k x k window (stride 1) of a (C, H, W) array, via summed-area tables."""
    s = np.zeros((padded.shape[0], padded.shape[1] + 1, padded.shape[2] + 1), dtype=np.float64)
    s[:, 1:, 1:] = padded.astype(np.float64).cumsum(1).cumsum(2)
    total = s[:, k:, k:] - s[:, :-k, k:] - s[:, k:, :-k] + s[:, :-k, :-k]
    return total / (k * k)


def blurred_sketch(sketch: np.ndarray, height: int, width: int, blur: int = SKETCH_BLUR) -> np.ndarray:
    """(3, height, width) float32 in [-1, 1]: the sketch scaled, reflect-padded by ``blur``,
    box-blurred with a (2 * blur + 1) square window, and resized (nearest) to the image size:
    what the renderer VAE-encodes as the initial latent."""
    x = sketch.astype(np.float32).transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0)
    padded = np.pad(x, ((0, 0), (blur, blur), (blur, blur)), mode="reflect")
    blurred = _box_mean(padded, 2 * blur + 1).astype(np.float32)
    rows, cols = nearest_index(height, blurred.shape[1]), nearest_index(width, blurred.shape[2])
    return blurred[:, rows][:, :, cols]
