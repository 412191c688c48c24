"""FLUX.1's latent layout and flow-matching schedule, as small pure functions.

Latents are (n, 16, H/8, W/8); the transformer reads them packed in 2 x 2 patches, one token of
64 features per patch: (n, H/16 * W/16, 64), row-major, with position ids (0, row, col) per
token, as diffusers' FluxPipeline packs them. The schedule is sigmas from 1 down to 1/N, shifted
by the model's scheduler (dev: by ``mu``, which grows linearly with the image's token count,
diffusers' ``calculate_shift``; schnell: no shift), then 0. An image-to-image start (sketch,
hi-res pass) runs the last ``steps`` of ``int(steps / strength)`` such sigmas, as Omost's
sampler does for SDXL, from ``sigma * noise + (1 - sigma) * image``.
"""

from __future__ import annotations

import numpy as np
import torch

PATCH = 2  # latents pack in 2 x 2 patches


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(n, c, h, w) -> (n, h/2 * w/2, 4c)."""
    n, c, h, w = latents.shape
    x = latents.view(n, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(n, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, h/2 * w/2, 4c) -> (n, c, h, w), for latents of ``h`` x ``w``."""
    n, _, features = tokens.shape
    x = tokens.view(n, h // PATCH, w // PATCH, features // (PATCH * PATCH), PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n, features // (PATCH * PATCH), h, w)


def image_ids(rows: int, cols: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(rows * cols, 3) position ids of the packed tokens: (0, row, col)."""
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(rows)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3).to(device=device, dtype=dtype)


def calculate_shift(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
                    base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """FLUX's ``mu``: linear in the image's token count (diffusers' ``calculate_shift``)."""
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * m + (base_shift - m * base_seq_len)


def sigmas(config: dict, steps: int, image_seq_len: int, *, strength: float = 1.0,
           shift: float | None = None) -> torch.Tensor:
    """``steps + 1`` float32 sigmas ending in 0: the model scheduler's (``config``, FLUX.1's
    ``FlowMatchEulerDiscreteScheduler``) for ``int(steps / strength)`` steps, the last ``steps``
    of them. ``shift``: a fixed shift instead of the scheduler's own."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    overrides = {} if shift is None else {"use_dynamic_shifting": False, "shift": float(shift)}
    scheduler = FlowMatchEulerDiscreteScheduler.from_config({**config, **overrides})
    total = steps if strength >= 1.0 else max(steps, int(steps / strength))
    base = np.linspace(1.0, 1 / total, total)
    mu = None
    if scheduler.config.use_dynamic_shifting:
        mu = calculate_shift(image_seq_len, scheduler.config.get("base_image_seq_len", 256),
                             scheduler.config.get("max_image_seq_len", 4096),
                             scheduler.config.get("base_shift", 0.5), scheduler.config.get("max_shift", 1.15))
    scheduler.set_timesteps(sigmas=list(base), mu=mu)
    return scheduler.sigmas[-(steps + 1):].to(torch.float32)


def timesteps(sigma: torch.Tensor, config: dict) -> torch.Tensor:
    """The scheduler's timesteps of ``sigma`` (sigma x 1000), which the transformer reads / 1000."""
    return sigma * config.get("num_train_timesteps", 1000)


def noised(image: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The flow-matching forward process: ``sigma * noise + (1 - sigma) * image``."""
    return sigma * noise + (1.0 - sigma) * image
