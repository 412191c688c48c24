"""Layer masks on FLUX's packed latent token grid (image / 16 on each side: the VAE's 8 times
2 x 2 patches), for regional attention (``attention.py``).

Each region's box is resized from the 90 x 90 grid with nearest-exact, as Omost resizes its
masks (``omostc.ir.masks``); masks are hard (a layer's feather and weight do not apply to FLUX's
joint attention). Overlaps are as in Omost: a token inside several boxes sees all their
regions. A box too small to hold a token's centre keeps the one token under its centre, so
every region reaches the image. The global layer covers every token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from omostc.ir.masks import box_mask
from omostc.ir.model import Layer
from omostc.spec.tables import GRID

TOKEN_PIXELS = 16  # the VAE's 8 x the 2 x 2 patches


def token_grid(height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of image tokens for an image of ``height`` x ``width`` pixels."""
    if height % TOKEN_PIXELS or width % TOKEN_PIXELS or height <= 0 or width <= 0:
        raise ValueError(f"FLUX image sizes are positive multiples of {TOKEN_PIXELS}, not {width} x {height}")
    return height // TOKEN_PIXELS, width // TOKEN_PIXELS


def layer_token_mask(layer: Layer, rows: int, columns: int) -> np.ndarray:
    """(rows, columns) bool: the tokens ``layer`` covers, at least one."""
    if layer.kind == "global":
        return np.ones((rows, columns), dtype=bool)
    mask = box_mask(layer.box, rows, columns)
    if not mask.any():
        top, bottom, left, right = layer.box
        row = min(int((top + bottom) / 2 * rows / GRID), rows - 1)
        column = min(int((left + right) / 2 * columns / GRID), columns - 1)
        mask[row, column] = True
    return mask


def token_masks(layers: Sequence[Layer], height: int, width: int) -> torch.Tensor:
    """(layers, rows x columns) bool, row-major as FLUX packs its latents, global layer first."""
    rows, columns = token_grid(height, width)
    return torch.from_numpy(np.stack([layer_token_mask(layer, rows, columns).reshape(-1) for layer in layers]))
