"""The FLUX.1 regional backend: IR + options + seeds -> images.

omostc's own loop, not ``FluxPipeline.__call__`` (whose negative pass and fixed text ids do not
fit regional masks): encode the layers once, start from noise (or the VAE-encoded colour sketch
at a strength), Euler steps of the flow-matching ODE on FLUX's shifted schedule with one
transformer call per step (dev: its guidance embedding; no negative pass), decode, optionally
the hi-res pass. While the regional attention's schedule says so, the transformer reads every
layer's T5 tokens (global first) under the regional mask; then the global layer's alone. A
scene with only a global layer is plain FLUX: the same latents as diffusers' FluxPipeline.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from omostc.backends.base import RenderOptions, Seed
from omostc.backends.common.sampling import draw_noise, generator_for
from omostc.backends.flux import flow
from omostc.backends.flux.encode import FluxConditioning, FluxTextEncoder, plan_name, t5_plan
from omostc.backends.flux.models import FluxModel
from omostc.backends.flux.options import FluxOptions, regional_options
from omostc.diagnostics import RenderError
from omostc.ir.lowering import lower
from omostc.ir.model import SceneIR
from omostc.spec.model import Scene

HIGHRES_EPS = 0.05  # as the SDXL backend: a hi-res scale within this of 1 is off
SCHNELL_LENGTH = 256  # T5 tokens FLUX.1-schnell was trained with (dev: 512)
DEV_LENGTH = 512


def to_uint8(pixels: torch.Tensor) -> list[np.ndarray]:
    """Omost's conversion: x * 127.5 + 127.5, clipped, truncated to uint8."""
    out = pixels.movedim(1, -1) * 127.5 + 127.5
    return list(out.detach().float().cpu().numpy().clip(0, 255).astype(np.uint8))


@dataclass
class Step:
    """What the transformer reads at one denoising step."""

    text: torch.Tensor  # (n, tokens, joint_attention_dim)
    text_ids: torch.Tensor  # (tokens, 3): zeros


class FluxRegionalBackend:
    """Regional prompting on FLUX.1 through masked joint attention."""

    name = "flux"

    def __init__(self, model: FluxModel, options: FluxOptions | None = None):
        self.model = model
        self.options = options or FluxOptions()
        self.encoder = FluxTextEncoder(model)
        self.device = model.execution_device or model.transformer.device
        self.dtype = model.dtype

    @property
    def max_length(self) -> int:
        if self.options.max_sequence_length is not None:
            return self.options.max_sequence_length
        return DEV_LENGTH if self.model.guidance_embeds else SCHNELL_LENGTH

    def lower(self, scene: Scene) -> SceneIR:
        """The neutral IR with each layer's prompt as T5 ids (cut prompts warned in ``ir.warnings``)."""
        ir = lower(scene)
        ir.text, warnings = t5_plan(ir.layers, self.model.tokenizer_2, self.max_length)
        ir.warnings += warnings
        return ir

    def parameters(self, options: RenderOptions) -> list[str]:
        out = ["Sampler: Euler (flow matching)",
               f"Shift: {'auto' if self.options.shift is None else self.options.shift}"]
        if self.model.guidance_embeds:
            out.append(f"Distilled CFG Scale: {self.options.guidance}")
        return out

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.model.vae.config.block_out_channels) - 1)

    # --- pixels <-> latents -----------------------------------------------------------------

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        vae = self.model.vae
        latent = vae.encode(pixels.to(self.device, vae.dtype)).latent_dist.mode()
        return ((latent - vae.config.shift_factor) * vae.config.scaling_factor).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list[np.ndarray]:
        vae = self.model.vae
        latents = latents.to(self.device, vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor
        return to_uint8(vae.decode(latents).sample)

    # --- sampling -----------------------------------------------------------------------------

    def _steps(self, cond: FluxConditioning, n: int) -> tuple[Step, Step]:
        """(the global layer's text alone, every layer's text): what a step feeds the transformer."""
        def step(parts: list[torch.Tensor]) -> Step:
            text = torch.cat(parts, dim=0).to(self.device, self.dtype)
            return Step(text[None].expand(n, -1, -1), torch.zeros(text.shape[0], 3, device=self.device,
                                                                  dtype=self.dtype))

        return step(cond.layers[:1]), step(cond.layers)

    def _regional(self, ir: SceneIR, cond: FluxConditioning, height: int, width: int):
        """The regional attention for a render at ``height`` x ``width`` (None for a global-only scene)."""
        if len(ir.layers) < 2:
            return None
        from omostc.backends.flux.attention import RegionalAttention, token_masks

        masks = token_masks(ir.layers, height, width)
        return RegionalAttention(cond.lengths, masks, regional_options(self.options))

    @torch.no_grad()
    def sample(self, ir: SceneIR, cond: FluxConditioning, initial: torch.Tensor | None, generator: torch.Generator,
               height: int, width: int, steps: int, strength: float = 1.0, progress=None,
               pick: tuple[int, int] = (0, 1)) -> torch.Tensor:
        """Denoised latents (1, 16, h, w); ``initial`` (the encoded image to start from, at
        ``strength``) or None for pure noise. ``pick``: (index, batch), the noise is image
        ``index`` of ``batch`` drawn from the generator at once (Omost's batch semantics)."""
        transformer, config = self.model.transformer, self.model.scheduler_config
        h, w = height // self.vae_scale, width // self.vae_scale
        rows, cols = h // flow.PATCH, w // flow.PATCH
        channels = transformer.config.in_channels // (flow.PATCH * flow.PATCH)
        noise = draw_noise(generator, (channels, h, w), self.dtype, *pick)
        noise = flow.pack(noise.to(self.device)).float()
        sigmas = flow.sigmas(config, steps, rows * cols, strength=strength if initial is not None else 1.0,
                             shift=self.options.shift).to(self.device)
        times = flow.timesteps(sigmas, config)
        latents = noise if initial is None else flow.noised(flow.pack(initial.to(self.device)), noise, sigmas[0])
        img_ids = flow.image_ids(rows, cols, self.device, self.dtype)
        guidance = (torch.full([1], self.options.guidance, device=self.device, dtype=torch.float32)
                    if self.model.guidance_embeds else None)
        pooled = cond.pooled[None].to(self.device, self.dtype)
        plain, regional = self._steps(cond, 1)
        attention = self._regional(ir, cond, height, width)
        with attention.installed(transformer) if attention is not None else contextlib.nullcontext():
            for i in range(steps):
                use = attention is not None and attention.set_step(i, steps)  # also tells the processors
                text = regional if use else plain
                velocity = transformer(
                    hidden_states=latents.to(self.dtype), timestep=times[i].expand(1).to(self.dtype) / 1000,
                    guidance=guidance, pooled_projections=pooled, encoder_hidden_states=text.text,
                    txt_ids=text.text_ids, img_ids=img_ids, return_dict=False)[0]
                latents = latents + (sigmas[i + 1] - sigmas[i]) * velocity.float()
                if progress is not None:
                    progress(i + 1, steps)
        return flow.unpack(latents, h, w)

    # --- the whole render -----------------------------------------------------------------

    def render(self, ir: SceneIR, options: RenderOptions, seeds: list[Seed], progress=None) -> list[Image.Image]:
        """One image per seed, each its own batch (an image depends on its seed alone); the text
        is encoded once for all of them. A ``Noise`` seed is image k of Omost's batch drawn from
        one generator (the hi-res pass draws again from it)."""
        if ir.tokenizer != plan_name(self.max_length):
            raise RenderError(f"the IR was lowered for {ir.tokenizer or 'no model'!r}; lower it with this "
                              f"backend ({plan_name(self.max_length)!r}) so its tokens fit the text encoder")
        o = options.snapped()
        cond = self.encoder.encode(ir, pad_to_max=self.options.pad_to_max)
        initial = None
        if o.sketch_strength is not None:
            initial = self.encode_image(torch.from_numpy(ir.initial_image(o.height, o.width))[None])
        images = []
        for seed in seeds:
            generator, pick = generator_for(seed, self.device)
            latents = self.sample(ir, cond, initial, generator, o.height, o.width, o.steps,
                                  o.sketch_strength or 1.0, progress, pick)
            pixels = self.decode(latents)
            if o.highres.scale > 1.0 + HIGHRES_EPS:
                pixels = self.highres_fix(ir, cond, pixels, generator, o, progress, pick)
            images.append(Image.fromarray(pixels[0]))
        return images

    def highres_fix(self, ir: SceneIR, cond: FluxConditioning, pixels: list[np.ndarray], generator: torch.Generator,
                    o: RenderOptions, progress=None, pick: tuple[int, int] = (0, 1)) -> list[np.ndarray]:
        """Omost's hi-res pass: Lanczos upscale to multiples of 64, encode, denoise again at
        ``highres.denoise`` for ``highres.steps`` steps (masks and schedule at the new size)."""
        h, w = pixels[0].shape[:2]
        tw, th = int(round(w * o.highres.scale / 64.0) * 64), int(round(h * o.highres.scale / 64.0) * 64)
        resized = [np.array(Image.fromarray(p).resize((tw, th), Image.Resampling.LANCZOS)) for p in pixels]
        batch = torch.from_numpy(np.stack(resized)).float() / 127.5 - 1.0
        latents = self.encode_image(batch.movedim(-1, 1))
        latents = self.sample(ir, cond, latents, generator, th, tw, o.highres.steps, o.highres.denoise, progress,
                              pick)
        return self.decode(latents)

