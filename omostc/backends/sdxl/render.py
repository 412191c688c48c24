"""The SDXL regional-attention backend: IR + options + seeds -> images.

Small steps, each a function: encode the text once, build the initial latent, denoise with
classifier-free guidance in one UNet call per step, decode, optionally hi-res fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from omostc.backends.base import RenderOptions, Seed
from omostc.backends.common.sampling import DiscreteSchedule, draw_noise, generator_for, sample_dpmpp_2m
from omostc.backends.sdxl.attention import RegionalAttention, RegionPlan, padded
from omostc.backends.sdxl.encode import Conditioning, SDXLTextEncoder
from omostc.backends.sdxl.models import SDXLModel
from omostc.backends.sdxl.options import SAMPLER_OMOST, SDXLOptions
from omostc.diagnostics import RenderError
from omostc.ir.lowering import lower
from omostc.ir.model import SceneIR
from omostc.spec.model import Scene

HIGHRES_EPS = 0.05  # Omost's app treats a scale within this of 1 as off


@dataclass
class UNetInputs:
    """The UNet conditioning of a batch of ``images`` (rows: negatives, then positives)."""

    encoder_hidden_states: torch.Tensor  # (2n, T_pad, 2048)
    text_embeds: torch.Tensor  # (2n, pooled_dim)
    time_ids: torch.Tensor  # (2n, 6)


def unet_inputs(cond: Conditioning, images: int, height: int, width: int, device, dtype) -> UNetInputs:
    positive = torch.cat(cond.layers, dim=0)
    t = positive.shape[0]
    length = padded(max(t, cond.negative.shape[0]))
    enc = torch.zeros(2 * images, length, positive.shape[-1], device=device, dtype=dtype)
    enc[:images, : cond.negative.shape[0]] = cond.negative.to(device, dtype)
    enc[images:, :t] = positive.to(device, dtype)
    pooled = torch.stack([cond.negative_pooled] * images + [cond.pooled] * images).to(device, dtype)
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype).repeat(2 * images, 1)
    return UNetInputs(enc, pooled, time_ids)


def to_uint8(pixels: torch.Tensor) -> list[np.ndarray]:
    """Omost's conversion: x * 127.5 + 127.5, clipped, truncated to uint8."""
    out = pixels.movedim(1, -1) * 127.5 + 127.5
    return list(out.detach().float().cpu().numpy().clip(0, 255).astype(np.uint8))


class SDXLRegionalBackend:
    """Regional prompting on SDXL through attention-score manipulation (Omost's method)."""

    name = "sdxl"

    def __init__(self, model: SDXLModel, options: SDXLOptions | None = None):
        self.model = model
        self.options = options or SDXLOptions()
        self.encoder = SDXLTextEncoder(model)
        self.attention = RegionalAttention(model.unet, self.options.processor)
        self.schedule = DiscreteSchedule()
        # diffusers' ``.device`` walks the parameters (about 1 ms a call): ask once.
        self.device = model.execution_device or model.unet.device

    @property
    def tokenizer(self):
        """Lower scenes with this tokenizer so bags match what the text encoders read."""
        return self.encoder.tok1

    def lower(self, scene: Scene) -> SceneIR:
        """The neutral IR with 77-token bags counted by this model's first tokenizer; a sub-prompt
        its second tokenizer counts differently is warned (``ir.warnings``)."""
        return lower(scene, self.tokenizer, self.encoder.tok2)

    def parameters(self, options: RenderOptions) -> list[str]:
        sampler = self.options.sampler
        return [f"Sampler: {'DPM++ 2M Karras' if sampler == SAMPLER_OMOST else sampler}"]

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.model.vae.config.block_out_channels) - 1)

    # --- steps ----------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.model.vae
        latent = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mode()
        return latent * vae.config.scaling_factor

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        vae = self.model.vae
        return to_uint8(vae.decode(latents.to(self.device, vae.dtype) / vae.config.scaling_factor).sample)

    def denoiser(self, inputs: UNetInputs, cfg: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        unet = self.model.unet

        def model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            x_in = x / (sigma ** 2 + 1) ** 0.5
            t = self.schedule.timestep(sigma.float().cpu()).to(x.device)
            eps = unet(torch.cat([x_in, x_in]).to(unet.dtype), t, encoder_hidden_states=inputs.encoder_hidden_states,
                       added_cond_kwargs={"text_embeds": inputs.text_embeds, "time_ids": inputs.time_ids},
                       return_dict=False)[0].to(x.dtype)
            eps_negative, eps_positive = eps.chunk(2)
            return x - (eps_negative + cfg * (eps_positive - eps_negative)) * sigma

        return model

    @torch.inference_mode()
    def sample(self, ir: SceneIR, cond: Conditioning, initial: torch.Tensor, generators: list[torch.Generator],
               steps: int, strength: float, cfg: float, progress=None, sampler: str = "omost",
               picks: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """``picks``: per generator, (index, batch): the noise is image ``index`` of ``batch``
        images drawn at once (Omost's batch), else one image's own draw."""
        unet = self.model.unet
        n, _, lh, lw = initial.shape
        noise = torch.cat([draw_noise(g, initial.shape[1:], unet.dtype, *(picks[i] if picks else (0, 1)))
                           for i, g in enumerate(generators)]).to(self.device)
        inputs = unet_inputs(cond, n, lh * self.vae_scale, lw * self.vae_scale, self.device, unet.dtype)
        plan = RegionPlan.build(ir, [c.shape[0] for c in cond.layers], lh, lw, n)
        with self.attention.active(plan):
            if sampler != SAMPLER_OMOST:
                return self._sample_diffusers(sampler, inputs, initial, noise, steps, strength, cfg, progress)
            sigmas = self.schedule.sigmas_for(steps, strength).to(self.device)
            latents = initial.to(noise) + noise * sigmas[0].to(noise)
            return sample_dpmpp_2m(self.denoiser(inputs, cfg), latents, sigmas, callback=progress)

    def _sample_diffusers(self, name: str, inputs: UNetInputs, initial, noise, steps: int, strength: float,
                          cfg: float, progress=None) -> torch.Tensor:
        """A diffusers scheduler by class name, configured from the checkpoint's own."""
        import diffusers

        cls = getattr(diffusers, name, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
            raise RenderError(f"unknown sampler {name!r}: use 'omost' or a diffusers scheduler class name "
                              "(e.g. DPMSolverMultistepScheduler, EulerDiscreteScheduler)")
        unet = self.model.unet
        scheduler = cls.from_config(self.model.scheduler_config or {})
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps
        if strength < 1.0:  # at least one step: diffusers' own rule leaves none for steps x strength < 1
            start = steps - max(1, min(int(steps * strength), steps))
            timesteps = timesteps[start * scheduler.order:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(start * scheduler.order)
            latents = scheduler.add_noise(initial.to(noise), noise, timesteps[:1])
        else:
            latents = noise * scheduler.init_noise_sigma
        for i, t in enumerate(timesteps):
            x_in = scheduler.scale_model_input(torch.cat([latents, latents]), t)
            eps = unet(x_in.to(unet.dtype), t, encoder_hidden_states=inputs.encoder_hidden_states,
                       added_cond_kwargs={"text_embeds": inputs.text_embeds, "time_ids": inputs.time_ids},
                       return_dict=False)[0]
            eps_negative, eps_positive = eps.chunk(2)
            latents = scheduler.step(eps_negative + cfg * (eps_positive - eps_negative), t, latents).prev_sample
            if progress is not None:
                progress(i + 1, len(timesteps))
        return latents

    # --- the whole render -----------------------------------------------------------------

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[Seed], progress=None) -> list[Image.Image]:
        """One image per seed. Each seed is its own batch, so an image depends on its seed alone,
        not on which other seeds share the call; the text is encoded once for all of them. A
        ``Noise`` seed is image k of Omost's batch: its noise is the k-th of a batch's draw from
        one generator (the hi-res pass draws again from the same generator, as Omost's app does)."""
        if ir.tokenizer != self.tokenizer.name:
            raise RenderError(f"the IR was lowered with tokenizer {ir.tokenizer!r}; lower it with this model's "
                              f"({self.tokenizer.name!r}) so its bags fit the text encoders")
        o = options.snapped()
        cond = self.encoder.encode(ir, o.negative_prompt, self.options.pooled)
        initial, strength = self.initial_latent(ir, o)
        images = []
        for seed in seeds:
            generator, pick = generator_for(seed, self.device)
            latents = self.sample(ir, cond, initial, [generator], o.steps, strength, o.cfg, progress,
                                  self.options.sampler, [pick])
            pixels = self.decode(latents)
            if o.highres.scale > 1.0 + HIGHRES_EPS:
                pixels = self.highres_fix(ir, cond, pixels, [generator], o, progress, [pick])
            images.append(Image.fromarray(pixels[0]))
        return images

    def initial_latent(self, ir: SceneIR, o: RenderOptions) -> tuple[torch.Tensor, float]:
        """Zeros (Omost's default), or the VAE-encoded blurred colour sketch with its strength."""
        if o.sketch_strength is not None:
            sketch = torch.from_numpy(ir.initial_image(o.height, o.width))[None]
            return self.encode_image(sketch).float(), o.sketch_strength
        size = (1, 4, o.height // self.vae_scale, o.width // self.vae_scale)
        return torch.zeros(size, device=self.device, dtype=torch.float32), 1.0

    def highres_fix(self, ir, cond, pixels, generators, o: RenderOptions, progress=None,
                    picks: list[tuple[int, int]] | None = None) -> list[np.ndarray]:
        h, w = pixels[0].shape[:2]
        tw, th = int(round(w * o.highres.scale / 64.0) * 64), int(round(h * o.highres.scale / 64.0) * 64)
        resized = [np.array(Image.fromarray(p).resize((tw, th), Image.Resampling.LANCZOS)) for p in pixels]
        batch = torch.from_numpy(np.stack(resized)).float() / 127.5 - 1.0
        latents = self.encode_image(batch.movedim(-1, 1))
        latents = self.sample(ir, cond, latents.float(), generators, o.highres.steps, o.highres.denoise, o.cfg,
                              progress, self.options.sampler, picks)
        return self.decode(latents)
