"""Regional cross-attention for diffusers' UNet, through its attention-processor interface.

Omost's formula (OMOST.md section 6): for a latent of H x W pixels and all conditions' tokens
concatenated, token j (of a layer whose mask covers n_j pixels) gets its score scaled by
s_j = H * W / n_j, and pixels outside that mask may not attend to it.

``RegionalAttnProcessor`` (the default) computes the same function fused: s_j is folded into
the keys, the mask is a boolean (or, with soft edges and weights, an additive) mask handed to
``scaled_dot_product_attention``, masks and scales are built once per resolution per render,
the condition keys and values are projected once per render, the token count is padded to a
multiple of 8 with masked keys, and no (batch, heads, pixels, tokens) tensor is materialised.
Classifier-free guidance runs in one UNet call: the negative half of the batch attends its own
77 tokens with plain attention.

``OmostReferenceProcessor`` is Omost's formula written literally (scores materialised, masks
resized at every call), kept for tests and benchmarks.

Soft edges (feather) and weights, omostc extensions, enter as an additive log(mask x weight)
term; with hard masks and weight 1 that is exactly Omost's -inf masking.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ...ir import SceneIR
from ...masks import grid_mask

NEGATIVE_TOKENS = 77
TOKEN_MULTIPLE = 8


def latent_resolutions(height: int, width: int, levels: int = 4) -> dict[int, tuple[int, int]]:
    """Sequence length -> (H, W) at each UNet level: stride-2 convolutions round up."""
    out, h, w = {}, height, width
    for _ in range(levels + 1):
        out[h * w] = (h, w)
        h, w = (h + 1) // 2, (w + 1) // 2
    return out


def padded(n: int) -> int:
    return -(-n // TOKEN_MULTIPLE) * TOKEN_MULTIPLE


@dataclass
class RegionPlan:
    """Everything the processors need for one render, fixed for all its steps."""

    ir: SceneIR
    token_layer: torch.Tensor  # (T,) layer index of each positive token
    latent_height: int
    latent_width: int
    images: int  # batch = [negative x images, positive x images]
    version: int = 0
    _per_resolution: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, ir: SceneIR, layer_tokens: list[int], latent_height: int, latent_width: int, images: int):
        token_layer = torch.repeat_interleave(torch.arange(len(layer_tokens)), torch.tensor(layer_tokens))
        return cls(ir=ir, token_layer=token_layer, latent_height=latent_height, latent_width=latent_width,
                   images=images)

    @property
    def tokens(self) -> int:
        return int(self.token_layer.numel())

    @property
    def padded_tokens(self) -> int:
        return padded(max(self.tokens, NEGATIVE_TOKENS))

    @property
    def soft(self) -> bool:
        return any(layer.feather > 0 or layer.weight != 1.0 for layer in self.ir.layers)

    def resolution(self, sequence_length: int) -> tuple[int, int]:
        res = latent_resolutions(self.latent_height, self.latent_width)
        if sequence_length not in res:
            raise ValueError(f"no UNet level of a {self.latent_height} x {self.latent_width} latent has "
                             f"{sequence_length} pixels")
        return res[sequence_length]

    def layer_masks(self, height: int, width: int) -> np.ndarray:
        """(layers, height * width) float32 mask values x weights."""
        values = [layer.mask(height, width).astype(np.float32).reshape(-1) * np.float32(layer.weight)
                  for layer in self.ir.layers]
        return np.stack(values)

    def masks_and_scales(self, sequence_length: int, device, dtype):
        """(mask (2, 1, N, T_pad), scale (T_pad,)) for this resolution, built once per render.

        Row 0 of the mask is the negative half's, row 1 the positive half's; the mask is boolean
        for hard masks and additive (0 / log value / -inf) otherwise."""
        key = (sequence_length, device, dtype)
        if key in self._per_resolution:
            return self._per_resolution[key]
        h, w = self.resolution(sequence_length)
        n, t, tp = h * w, self.tokens, self.padded_tokens
        values = torch.from_numpy(self.layer_masks(h, w)).to(device)  # (L, N)
        unweighted = torch.from_numpy(np.stack([layer.mask(h, w).astype(np.float32).reshape(-1)
                                                for layer in self.ir.layers])).to(device)
        area = unweighted.sum(dim=1)
        area = torch.where(area > 0, area, torch.ones_like(area))  # a zero-area layer is masked out anyway
        scale = torch.ones(tp, device=device, dtype=torch.float32)
        layer_of = self.token_layer.to(device)
        scale[:t] = (n / area)[layer_of]
        per_token = values[layer_of].T  # (N, T)
        if self.soft:
            positive = torch.full((n, tp), -math.inf, device=device, dtype=torch.float32)
            positive[:, :t] = torch.where(per_token > 0, per_token.clamp(min=1e-30).log(), -math.inf)
            negative = torch.full((n, tp), -math.inf, device=device, dtype=torch.float32)
            negative[:, :NEGATIVE_TOKENS] = 0.0
            mask = torch.stack([negative, positive])[:, None].to(dtype)
        else:
            positive = torch.zeros((n, tp), device=device, dtype=torch.bool)
            positive[:, :t] = per_token > 0.5
            negative = torch.zeros((n, tp), device=device, dtype=torch.bool)
            negative[:, :NEGATIVE_TOKENS] = True
            mask = torch.stack([negative, positive])[:, None]
        self._per_resolution[key] = (mask, scale.to(dtype))
        return self._per_resolution[key]


class RegionalAttention:
    """Owns one UNet's regional processors and the plan of the render in progress."""

    def __init__(self, unet, processor: str = "fast"):
        self.plan: RegionPlan | None = None
        self._renders = 0
        cls = {"fast": RegionalAttnProcessor, "reference": OmostReferenceProcessor}.get(processor)
        if cls is None:
            raise ValueError(f"processor must be 'fast' or 'reference', not {processor!r}")
        self.processor = processor
        procs = {}
        for name, current in unet.attn_processors.items():
            procs[name] = cls(self) if name.endswith("attn2.processor") else current
        unet.set_attn_processor(procs)

    @contextmanager
    def active(self, plan: RegionPlan):
        self._renders += 1
        plan.version = self._renders
        self.plan = plan
        try:
            yield plan
        finally:
            self.plan = None


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _finish(attn, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


class RegionalAttnProcessor:
    """The fused regional cross-attention (see the module docstring)."""

    def __init__(self, owner: RegionalAttention):
        self.owner = owner
        self._kv: tuple | None = None  # (render version, keys, values) for this layer
        self._plain = None

    def _plain_attention(self, attn, hidden_states, encoder_hidden_states, attention_mask):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self._plain = self._plain or AttnProcessor2_0()
        return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask)

    def _keys_values(self, attn, encoder_hidden_states: torch.Tensor, plan: RegionPlan, scale: torch.Tensor):
        if self._kv is not None and self._kv[0] == plan.version:
            return self._kv[1], self._kv[2]
        n = plan.images
        rows = encoder_hidden_states[:: n][:2]  # one negative row, one positive row
        k, v = attn.to_k(rows), attn.to_v(rows)
        k = torch.stack([k[0], k[1] * scale[:, None]])  # s_j folded into the positive keys
        k = _heads(k, attn.heads).repeat_interleave(n, dim=0)
        v = _heads(v, attn.heads).repeat_interleave(n, dim=0)
        self._kv = (plan.version, k, v)
        return k, v

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        plan = self.owner.plan
        if plan is None or encoder_hidden_states is None or hidden_states.ndim != 3:
            return self._plain_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
        residual = hidden_states
        mask, scale = plan.masks_and_scales(hidden_states.shape[1], hidden_states.device, hidden_states.dtype)
        k, v = self._keys_values(attn, encoder_hidden_states, plan, scale)
        q = _heads(attn.to_q(hidden_states), attn.heads)
        full_mask = mask.repeat_interleave(plan.images, dim=0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=full_mask, scale=attn.scale)
        return _finish(attn, _merge(out).to(q.dtype), residual)


class OmostReferenceProcessor:
    """Omost's cross-attention, literally: masks resized at every call, scores materialised."""

    def __init__(self, owner: RegionalAttention):
        self.owner = owner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        plan = self.owner.plan
        if plan is None or encoder_hidden_states is None:
            from diffusers.models.attention_processor import AttnProcessor2_0

            return AttnProcessor2_0()(attn, hidden_states, encoder_hidden_states, attention_mask)
        residual = hidden_states
        h, w = plan.resolution(hidden_states.shape[1])
        n = plan.images
        negative = self._attend(attn, hidden_states[:n], encoder_hidden_states[:n, :NEGATIVE_TOKENS])
        values, weights = [], []
        for i, layer in enumerate(plan.ir.layers):
            if layer.feather > 0:
                m = torch.from_numpy(layer.mask(h, w))
            else:
                m = torch.from_numpy(grid_mask(layer.box).astype(np.float32))
                m = F.interpolate(m[None, None], (h, w), mode="nearest-exact")[0, 0]
            count = int((plan.token_layer == i).sum())
            values.append(m.flatten()[:, None].repeat(1, count))
            weights.append(torch.full((count,), float(layer.weight)))
        device = hidden_states.device
        positive = self._attend(attn, hidden_states[n:], encoder_hidden_states[n:, :plan.tokens],
                                torch.cat(values, dim=1).to(device), torch.cat(weights).to(device))
        return _finish(attn, torch.cat([negative, positive]), residual)

    @staticmethod
    def _attend(attn, x, cond, values=None, weights=None):
        q, k, v = (_heads(t, attn.heads) for t in (attn.to_q(x), attn.to_k(cond), attn.to_v(cond)))
        sim = q @ k.transpose(-2, -1) * attn.scale
        if values is not None:
            hw = values.shape[0]
            mask_scale = hw / values.sum(dim=0, keepdim=True)  # per token: H * W / its mask's area
            sim = sim * mask_scale[None, None].to(sim)
            sim = sim.masked_fill((values == 0)[None, None], -math.inf)
            bias = torch.where(values > 0, (values * weights).clamp(min=1e-30).log(), 0.0)
            sim = sim + bias[None, None].to(sim)
        return _merge(sim.softmax(dim=-1) @ v)
