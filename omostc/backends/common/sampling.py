"""Omost's sampler (OMOST.md section 7), k-diffusion style: a discrete noise schedule, Karras
sigmas and DPM++ 2M over a denoiser ``model(x, sigma) -> denoised``. Backend-neutral."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from omostc.backends.base import Noise, Seed


class DiscreteSchedule:
    """SD/SDXL's 1000-step scaled-linear schedule, as sigmas."""

    def __init__(self, timesteps: int = 1000, linear_start: float = 0.00085, linear_end: float = 0.012):
        betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
        alphas_cumprod = torch.tensor(np.cumprod((1.0 - betas).numpy(), axis=0), dtype=torch.float32)
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Index of the nearest log-sigma."""
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def karras(self, n: int, rho: float = 7.0) -> torch.Tensor:
        ramp = torch.linspace(0, 1, n)
        min_inv, max_inv = self.sigma_min ** (1 / rho), self.sigma_max ** (1 / rho)
        sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
        return torch.cat([sigmas, sigmas.new_zeros([1])])

    def sigmas_for(self, steps: int, strength: float = 1.0) -> torch.Tensor:
        """The last ``steps + 1`` of ``int(steps / strength)`` Karras sigmas (ending at 0)."""
        return self.karras(int(steps / strength))[-(steps + 1):]


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                    callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """DPM-Solver++(2M)."""
    def t_fn(sigma):
        return sigma.log().neg()

    def sigma_fn(t):
        return t.neg().exp()

    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i])
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
        if callback is not None:
            callback(i + 1, len(sigmas) - 1)
    return x


def draw_noise(generator: torch.Generator, shape, dtype, index: int = 0, batch: int = 1) -> torch.Tensor:
    """Image ``index``'s noise of ``batch`` images drawn from ``generator`` at once (Omost's
    ``randn((batch, ...))``): the whole batch is drawn, so the draw is Omost's exactly."""
    noise = torch.randn((batch, *shape), generator=generator, device=generator.device, dtype=dtype)
    return noise[index:index + 1]


def generator_for(seed: Seed, device) -> tuple[torch.Generator, tuple[int, int]]:
    """The generator of an image's seed and its (index, batch) pick: a plain seed is its own
    batch of one; a ``Noise`` seed is image ``index`` of a batch drawn from one generator."""
    start, pick = (seed.seed, (seed.index, seed.batch)) if isinstance(seed, Noise) else (int(seed), (0, 1))
    return torch.Generator(device=device).manual_seed(int(start)), pick
