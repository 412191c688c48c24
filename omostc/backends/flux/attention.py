"""Regional joint attention for FLUX.1 (diffusers' ``FluxTransformer2DModel``), installed through
its attention-processor interface (``set_attn_processor``; nothing is monkey-patched).

The method of Regional-Prompting-FLUX (arXiv 2411.02395), on omostc's layers. The text stream
holds every layer's T5 tokens, global layer first, then the image tokens. In the regional
blocks of the regional steps:

- a region's text tokens and the image tokens inside its mask see each other; each text block
  sees itself and no other text block; the global layer's text sees every image token;
- image-to-image attention stays open, and every image token sees the global text;
- an image token's output is blended with the base pass (image over the global text and the
  image alone): ``(1 - base_ratio) * regional + base_ratio * base``; text outputs are not blended.

Blocks off the interval (``double_interval``, ``single_interval``) attend openly over the whole
stream, blended with the base pass, as the reference does; after the regional steps the loop
feeds the global layer's tokens alone and the processors call diffusers' own processor.

The fused path never builds a (heads, tokens, tokens) tensor. It splits each image query's
softmax by key sets: one unmasked attention of the global text and image queries over the
global text and image keys (exactly plain FLUX's attention, and the base pass for free), which
also returns its log-sum-exp; one masked attention of the image queries over the regions' text
keys only (also with its log-sum-exp); and the two are merged exactly,
``out = out_a + sigmoid(lse_b - lse_a) * (out_b - out_a)``. Region text queries attend with a
(region text x stream) boolean mask. Kernels: the unmasked part runs flash attention (CUDA
fp16/bf16: ``_scaled_dot_product_flash_attention``, no mask; CUDA fp32: memory-efficient
attention; CPU: the flash CPU kernel); the masked parts use the CPU flash kernel (which takes a
mask) or, on CUDA, a chunked (heads, image, region text) computation and torch's SDPA with a
boolean mask, which dispatches to memory-efficient attention (flash attention takes no mask).
Where the log-sum-exp kernels are unavailable the image queries attend all keys with a
(image x stream) mask and the base pass is a second attention: the same function, slower.

``reference=True`` selects the literal processor: the (S, S) joint mask and the scores
materialised, softmax, for tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 24  # the chunked (heads, image, region text) scores: 64 MiB of fp32 at a time
DOUBLE, SINGLE = "transformer_blocks", "single_transformer_blocks"


@dataclass(frozen=True)
class RegionalAttentionOptions:
    """How and when regions steer attention. Defaults are the reference's (infer_flux_regional.py)."""

    regional_steps: float = 10 / 24  # fraction of the sampling steps with regions: the reference's 10 of 24
    mask_steps: int | None = None  # or a count of steps (the reference's mask_inject_steps); overrides the fraction
    double_interval: int = 1  # regional mask in double-stream blocks 0, k, 2k, ...
    single_interval: int = 1  # and in single-stream blocks 0, k, 2k, ...
    base_ratio: float = 0.3  # image outputs blended with the base pass (reference examples: 0.1 to 0.3)
    area_scaling: bool = False  # Omost's scores x (image tokens / region tokens) for region text keys
    area_scale_max: float = 4.0  # cap of that factor (unmeasured on a real model: hence off by default)
    reference: bool = False  # the literal processor (materialised scores), for tests

    def __post_init__(self):
        if not 0.0 <= self.regional_steps <= 1.0:
            raise ValueError(f"regional_steps is a fraction of the steps, 0 to 1, not {self.regional_steps}")
        if self.mask_steps is not None and self.mask_steps < 0:
            raise ValueError(f"mask_steps must be at least 0, not {self.mask_steps}")
        if self.double_interval < 1 or self.single_interval < 1:
            raise ValueError("block intervals must be at least 1")
        if not 0.0 <= self.base_ratio <= 1.0:
            raise ValueError(f"base_ratio must be between 0 and 1, not {self.base_ratio}")
        if self.area_scale_max < 1.0:
            raise ValueError(f"area_scale_max must be at least 1, not {self.area_scale_max}")

    def regional_step_count(self, steps: int) -> int:
        """Steps 0 .. count-1 use regions: ``mask_steps`` if given, else round(steps x fraction), at
        least one when the fraction is > 0 (24 steps: 10; 28: 12; schnell's 4: 2)."""
        if self.mask_steps is not None:
            return min(steps, self.mask_steps)
        count = round(steps * self.regional_steps)
        return min(steps, max(count, 1 if self.regional_steps > 0 else 0))


def token_masks(layers, height: int, width: int) -> torch.Tensor:
    """(layers, image tokens) bool masks on the packed latent grid: see ``masks.token_masks``
    (imported here lazily so that this module needs torch alone)."""
    from omostc.backends.flux.masks import token_masks as build

    return build(layers, height, width)


@dataclass
class _Plan:
    """What the fused path needs at one device and dtype, built once per render and resolution."""

    t_global: int
    t_regions: int
    images: int
    text_mask: torch.Tensor  # (T_R, S) additive 0 / -inf in the processors' order [region texts, global text, image]
    image_bias: torch.Tensor  # (N, T_R) additive 0 / -inf: the region texts each image token sees
    uncovered: torch.Tensor  # (N,) additive 0 / -inf: -inf where an image token is in no region
    key_scale: torch.Tensor | None  # (T_R, 1) Omost's area factors for region text keys, or None
    split: bool = True  # whether the log-sum-exp kernels work here (False after they raised)

    @classmethod
    def build(cls, text_lengths: Sequence[int], masks: torch.Tensor, options: RegionalAttentionOptions,
              device, dtype) -> _Plan:
        tg, regions = text_lengths[0], list(text_lengths[1:])
        tr, n = sum(regions), masks.shape[1]
        layer = torch.repeat_interleave(torch.arange(1, len(text_lengths)), torch.tensor(regions, dtype=torch.long))
        sees = masks.bool().cpu()[layer].T  # (N, T_R)
        text_mask = torch.zeros(tr, tr + tg + n, dtype=torch.bool)
        text_mask[:, :tr] = layer[:, None] == layer[None, :]
        text_mask[:, tr + tg:] = sees.T
        zero = torch.zeros((), dtype=torch.float32)
        text_bias = torch.where(text_mask, zero, -math.inf)
        bias = torch.where(sees, zero, -math.inf)
        uncovered = torch.where(sees.any(dim=1), zero, -math.inf)
        scale = None
        if options.area_scaling:
            scale = area_factors(masks, options.area_scale_max)[layer][:, None].to(device, dtype)
        bias_dtype = dtype if device.type == "cpu" else torch.float32  # the CPU kernel's, or the chunked fp32 path's
        return cls(tg, tr, n, text_bias.to(device, dtype), bias.to(device, bias_dtype), uncovered.to(device), scale)


def area_factors(masks: torch.Tensor, cap: float) -> torch.Tensor:
    """Per layer: Omost's s = image tokens / tokens in the layer's mask, capped (the global layer: 1)."""
    counts = masks.bool().sum(dim=1).clamp(min=1).to(torch.float32)
    return (masks.shape[1] / counts).clamp(max=cap)


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                  bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA that also returns the log-sum-exp (B, H, L) in fp32, through torch's own kernels.
    ``bias`` (additive, the query's dtype) only on CPU. Raises RuntimeError where no kernel fits."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias,
                                                                          scale=scale)
    if bias is not None or q.device.type != "cuda":
        raise RuntimeError("no log-sum-exp attention kernel for this device")
    if q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256 and q.shape[-1] % 8 == 0:
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
        return out[0], out[1]
    out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False, scale=scale)
    return out[0], out[1][..., :q.shape[2]]  # the efficient kernel pads its log-sum-exp rows


def _region_text_part(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Plan, scale: float):
    """Image queries over the region texts' keys only, masked: (out fp32, lse fp32); rows in no
    region get lse -inf and out 0."""
    if q.device.type == "cpu":  # the flash CPU kernel takes the mask (it gives such rows lse 0: hence ``uncovered``)
        out, lse = attention_lse(q, k, v, scale, plan.image_bias)
        return out.float(), lse + plan.uncovered
    return region_text_chunked(q, k, v, plan.image_bias, scale)


def region_text_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
                        chunk_elements: int = CHUNK_ELEMENTS):
    """``_region_text_part`` in fp32 by chunks of image queries, for devices without a masked
    log-sum-exp kernel: at most ``chunk_elements`` scores at a time, (heads, image, region text)."""
    b, h, n, _ = q.shape
    rows = max(1, chunk_elements // max(1, b * h * k.shape[2]))
    outs, lses = [], []
    for start in range(0, n, rows):
        s = torch.matmul(q[:, :, start:start + rows], k.transpose(-1, -2)).float() * scale
        s = s + bias[start:start + rows].float()
        lse = torch.logsumexp(s, dim=-1)
        p = torch.exp(s - torch.where(torch.isinf(lse), 0.0, lse)[..., None])
        outs.append(torch.matmul(p, v.float()))
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def to_fused_order(x: torch.Tensor, t_global: int, t_text: int) -> torch.Tensor:
    """(B, S, H, D) in the stream's order [global text, region texts, image] to (B, H, S, D) in the
    fused path's [region texts, global text, image]: its plain-FLUX part is one contiguous slice."""
    return torch.cat([x[:, t_global:t_text].transpose(1, 2), x[:, :t_global].transpose(1, 2),
                      x[:, t_text:].transpose(1, 2)], dim=2)


def from_fused_order(x: torch.Tensor, t_global: int, t_text: int) -> torch.Tensor:
    """The inverse of ``to_fused_order``: (B, H, S, D) to (B, S, H, D) in the stream's order."""
    x = x.transpose(1, 2)
    t_regions = t_text - t_global
    return torch.cat([x[:, t_regions:t_text], x[:, :t_regions], x[:, t_text:]], dim=1)


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: _Plan, scale: float, *,
                    injected: bool, base_ratio: float, split: bool = True) -> torch.Tensor:
    """Regional joint attention on (B, H, S, D) tensors in the processors' order [region texts,
    global text, image]; returns the output in that order."""
    tr, t = plan.t_regions, plan.t_regions + plan.t_global
    qa, ka, va = q[:, :, tr:], k[:, :, tr:], v[:, :, tr:]  # global text and image: plain FLUX
    if not injected:  # off the block interval: open attention over the whole stream, blended with the base
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        if base_ratio > 0:
            base = F.scaled_dot_product_attention(q[:, :, t:], ka, va, scale=scale)
            out = torch.cat([out[:, :, :t], torch.lerp(out[:, :, t:], base, base_ratio)], dim=2)
        return out
    out_text = F.scaled_dot_product_attention(q[:, :, :tr], k, v, attn_mask=plan.text_mask, scale=scale)
    kr = k[:, :, :tr] if plan.key_scale is None else k[:, :, :tr] * plan.key_scale
    if split and plan.split:
        try:
            out_a, lse_a = attention_lse(qa, ka, va, scale)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:  # no such kernel here: the masked path from now on
            plan.split = False
    if split and plan.split:
        out_b, lse_b = _region_text_part(q[:, :, t:], kr, v[:, :, :tr], plan, scale)
        weight = torch.sigmoid(lse_b - lse_a[:, :, plan.t_global:]) * (1 - base_ratio)
        image_a = out_a[:, :, plan.t_global:]
        image = torch.addcmul(image_a.float(), weight[..., None], out_b - image_a.float()).to(q.dtype)
        return torch.cat([out_text, out_a[:, :, :plan.t_global], image], dim=2)
    out_a = F.scaled_dot_product_attention(qa, ka, va, scale=scale)
    image_mask = torch.cat([plan.image_bias.isfinite(), torch.ones(plan.images, t - tr + plan.images,
                                                                    dtype=torch.bool, device=q.device)], dim=1)
    keys = k if plan.key_scale is None else torch.cat([kr, ka], dim=2)
    image = F.scaled_dot_product_attention(q[:, :, t:], keys, v, attn_mask=image_mask, scale=scale)
    image = torch.lerp(image, out_a[:, :, plan.t_global:], base_ratio)
    return torch.cat([out_text, out_a[:, :, :plan.t_global], image], dim=2)


class RegionalAttention:
    """One render's regional attention at one resolution: the layers' token counts and masks, the
    options, and the step in progress. The sampling loop asks ``use_regions(step, steps)`` which
    tokens to feed (all layers' T5 tokens concatenated, global first; or the global layer's
    alone), calls ``set_step`` before each transformer call, inside ``installed(transformer)``."""

    def __init__(self, text_lengths: Sequence[int], masks: torch.Tensor,
                 options: RegionalAttentionOptions | None = None, *, reference: bool | None = None,
                 split_softmax: bool = True):
        self.text_lengths = [int(n) for n in text_lengths]
        self.masks = masks.bool().cpu()
        self.options = options or RegionalAttentionOptions()
        if reference is not None:
            self.options = dataclasses.replace(self.options, reference=reference)
        self.split_softmax = split_softmax  # False: the masked fallback, for tests and benchmarks
        if not self.text_lengths or min(self.text_lengths) < 1:
            raise ValueError("every layer needs at least one text token")
        if self.masks.ndim != 2 or self.masks.shape[0] != len(self.text_lengths):
            raise ValueError(f"masks must be (layers, image tokens) with {len(self.text_lengths)} layers, "
                             f"not {tuple(self.masks.shape)}")
        self.regional = False
        self._plans: dict[tuple[str, torch.dtype], _Plan] = {}

    @property
    def layers(self) -> int:
        return len(self.text_lengths)

    @property
    def image_tokens(self) -> int:
        return self.masks.shape[1]

    def use_regions(self, step: int, steps: int) -> bool:
        return self.layers > 1 and step < self.options.regional_step_count(steps)

    def set_step(self, step: int, steps: int) -> bool:
        """Set the step about to run; returns ``use_regions(step, steps)``."""
        self.regional = self.use_regions(step, steps)
        return self.regional

    def text_tokens(self) -> int:
        """The text stream's length in the current step."""
        return sum(self.text_lengths) if self.regional else self.text_lengths[0]

    def plan(self, device, dtype) -> _Plan:
        key = (str(device), dtype)
        if key not in self._plans:
            self._plans[key] = _Plan.build(self.text_lengths, self.masks, self.options, torch.device(device), dtype)
        return self._plans[key]

    def injected(self, kind: str, index: int) -> bool:
        interval = self.options.double_interval if kind == DOUBLE else self.options.single_interval
        return index % interval == 0

    @contextmanager
    def installed(self, transformer) -> Iterator[RegionalAttention]:
        """Our processors on every FLUX attention of ``transformer``; its own ones back on exit."""
        originals = dict(transformer.attn_processors)
        processors = {}
        for name, original in originals.items():
            parts = name.split(".")
            if len(parts) == 4 and parts[0] in (DOUBLE, SINGLE) and parts[2:] == ["attn", "processor"]:
                processors[name] = RegionalFluxAttnProcessor(self, original, parts[0], int(parts[1]))
            else:
                processors[name] = original
        transformer.set_attn_processor(processors)
        try:
            yield self
        finally:
            transformer.set_attn_processor(dict(originals))


def _project(attn, hidden_states, encoder_hidden_states, image_rotary_emb):
    """Queries, keys and values (B, S, H, D) over [text, image], as diffusers' FluxAttnProcessor
    computes them (projections, RMS norms, rotary embedding)."""
    from diffusers.models.embeddings import apply_rotary_emb

    if attn.fused_projections:
        q, k, v = attn.to_qkv(hidden_states).chunk(3, dim=-1)
    else:
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
    q, k, v = (x.unflatten(-1, (-1, attn.head_dim)) for x in (q, k, v))
    q, k = attn.norm_q(q), attn.norm_k(k)
    if encoder_hidden_states is not None and attn.added_kv_proj_dim is not None:
        if attn.fused_projections:
            eq, ek, ev = attn.to_added_qkv(encoder_hidden_states).chunk(3, dim=-1)
        else:
            eq, ek, ev = (f(encoder_hidden_states) for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
        eq, ek, ev = (x.unflatten(-1, (-1, attn.head_dim)) for x in (eq, ek, ev))
        q, k, v = (torch.cat([eq_, x], dim=1) for eq_, x in ((attn.norm_added_q(eq), q), (attn.norm_added_k(ek), k),
                                                             (ev, v)))
    if image_rotary_emb is not None:
        q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
        k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
    return q, k, v


class RegionalFluxAttnProcessor:
    """Regional joint attention for one FLUX attention block; diffusers' processor outside the regional steps."""

    def __init__(self, owner: RegionalAttention, original, kind: str, index: int):
        self.owner = owner
        self.original = original
        self.kind = kind
        self.index = index

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        owner = self.owner
        text = encoder_hidden_states.shape[1] if encoder_hidden_states is not None \
            else hidden_states.shape[1] - owner.image_tokens
        if text != owner.text_tokens():
            raise ValueError(f"the text stream has {text} tokens; this step expects {owner.text_tokens()} "
                             f"({'all layers' if owner.regional else 'the global layer'})")
        if not owner.regional:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if attention_mask is not None:
            raise ValueError("regional attention does not combine with another attention mask")
        q, k, v = _project(attn, hidden_states, encoder_hidden_states, image_rotary_emb)
        tg, t = owner.text_lengths[0], sum(owner.text_lengths)
        scale = attn.head_dim ** -0.5
        injected = owner.injected(self.kind, self.index)
        if owner.options.reference:
            from omostc.backends.flux.reference import reference_attention

            q, k, v = (x.transpose(1, 2) for x in (q, k, v))
            out = reference_attention(q, k, v, owner.text_lengths, owner.masks, owner.options, scale,
                                      injected=injected).transpose(1, 2)
        else:
            q, k, v = (to_fused_order(x, tg, t) for x in (q, k, v))
            plan = owner.plan(q.device, q.dtype)
            out = from_fused_order(fused_attention(q, k, v, plan, scale, injected=injected,
                                                   base_ratio=owner.options.base_ratio, split=owner.split_softmax),
                                   tg, t)
        out = out.flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is None:
            return out
        text_out, image_out = out[:, :t], out[:, t:]
        image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
        return image_out, attn.to_add_out(text_out.contiguous())
