"""Regional cross-attention for diffusers' UNet, through its attention-processor interface.

Omost's formula (OMOST.md section 6): for a latent of H x W pixels and all conditions' tokens
concatenated, token j (of a layer whose mask covers n_j pixels) gets its score scaled by
s_j = H * W / n_j, and pixels outside that mask may not attend to it.

``RegionalAttnProcessor`` (the default) computes the same function fused: s_j is folded into
the keys, the mask is a boolean (or, with soft edges and weights, an additive) mask handed to
``scaled_dot_product_attention``, masks and scales are built once per resolution per render,
the condition keys and values are projected once per render, the token count is padded to a
multiple of 8 with masked keys, and no (batch, heads, pixels, tokens) tensor is materialised.
Where regions overlap little, pixels are grouped by the layers covering them and each group
attends exactly its tokens, so masked-out pairs cost nothing. Classifier-free guidance runs in
one UNet call: the negative half of the batch attends its own 77 tokens, unmasked.

``OmostReferenceProcessor`` is Omost's formula written literally (scores materialised, masks
resized at every call), kept for tests and benchmarks.

Soft edges (feather) and weights, omostc extensions, enter as an additive log(mask x weight)
term; with hard masks and weight 1 that is exactly Omost's -inf masking.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from omostc.ir.masks import grid_mask
from omostc.ir.model import SceneIR

if TYPE_CHECKING:
    from diffusers.models.attention_processor import AttnProcessor2_0

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
    _per_resolution: dict = field(default_factory=dict, repr=False)  # sequence length -> ResolutionPlan

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

    def at_resolution(self, sequence_length: int, device, dtype) -> ResolutionPlan:
        """Masks, scales and pixel groups for one UNet level, built once per render."""
        key = (sequence_length, str(device), dtype)
        if key not in self._per_resolution:
            self._per_resolution[key] = ResolutionPlan.build(self, *self.resolution(sequence_length), device, dtype)
        return self._per_resolution[key]


@dataclass
class ResolutionPlan:
    """The positive half's attention pattern at one resolution.

    ``scale`` (T_pad,) is s_j per token (1 on padding). With hard masks the pixels are grouped
    by the set of layers covering them: each group attends exactly its layers' tokens, so no
    mask is needed and masked-out pairs cost nothing. Otherwise (soft edges, weights, or too
    many groups to pay off) ``mask`` is a dense (1, 1, N, T_pad) boolean or additive mask."""

    scale: torch.Tensor
    groups: list[tuple[int, torch.Tensor]] | None  # (pixel count, token indices), in ``order``
    mask: torch.Tensor | None
    order: torch.Tensor | None = None  # pixel permutation that makes every group contiguous
    inverse: torch.Tensor | None = None  # its inverse

    @classmethod
    def build(cls, plan: RegionPlan, h: int, w: int, device, dtype) -> ResolutionPlan:
        n, t, tp = h * w, plan.tokens, plan.padded_tokens
        unweighted = np.stack([layer.mask(h, w).astype(np.float32).reshape(-1) for layer in plan.ir.layers])
        area = unweighted.sum(axis=1)
        area = np.where(area > 0, area, 1.0)  # a zero-area layer is masked out anyway
        layer_of = plan.token_layer.numpy()
        scale = np.ones(tp, dtype=np.float32)
        scale[:t] = (n / area)[layer_of]
        scale_t = torch.from_numpy(scale).to(device, dtype)
        if not plan.soft:
            groups = _coverage_groups(unweighted > 0.5, layer_of, t)
            if groups is not None:
                order = torch.cat([px for px, _ in groups])
                return cls(scale_t, [(len(px), tok.to(device)) for px, tok in groups], None,
                           order=order.to(device), inverse=torch.argsort(order).to(device))
        values = unweighted * np.array([[layer.weight] for layer in plan.ir.layers], dtype=np.float32)
        per_token = torch.from_numpy(values[layer_of].T.copy()).to(device)  # (N, T)
        if plan.soft:
            mask = torch.full((n, tp), -math.inf, device=device, dtype=torch.float32)
            mask[:, :t] = torch.where(per_token > 0, per_token.clamp(min=1e-30).log(), -math.inf)
            mask = mask.to(dtype)
        else:
            mask = torch.zeros((n, tp), device=device, dtype=torch.bool)
            mask[:, :t] = per_token > 0.5
        return cls(scale_t, None, mask[None, None])


MAX_GROUPS = 24
MIN_SAVING = 0.15  # grouping must cut the attention work by this much...
MAX_GATHERED = 2.0  # ...and its per-group key/value copies stay within this multiple of the dense ones


def _coverage_groups(covered: np.ndarray, layer_of: np.ndarray, tokens: int):
    """Pixels grouped by the set of layers covering them, with each group's token indices; None
    when that makes too many groups, saves too little work, or needs too much key/value memory
    (overlapping regions put the same tokens in many groups: the dragon scene's 8 groups would
    copy its keys 4.6 times, 5 GB on a full-size SDXL in fp32)."""
    signatures, inverse = np.unique(covered.T, axis=0, return_inverse=True)  # (groups, layers)
    if len(signatures) > MAX_GROUPS:
        return None
    token_ranges = [np.flatnonzero(layer_of == layer) for layer in range(covered.shape[0])]
    groups, work = [], 0
    for g, signature in enumerate(signatures):
        pixels = np.flatnonzero(inverse.reshape(-1) == g)
        toks = np.concatenate([token_ranges[layer] for layer in np.flatnonzero(signature)])
        work += len(pixels) * len(toks)
        groups.append((torch.from_numpy(pixels), torch.from_numpy(toks)))
    if work > (1 - MIN_SAVING) * covered.shape[1] * tokens:
        return None
    if sum(len(toks) for _, toks in groups) > MAX_GATHERED * tokens:
        return None
    return groups


class RegionalAttention:
    """Owns one UNet's regional processors and the plan of the render in progress."""

    def __init__(self, unet, processor: str = "fast"):
        self.plan: RegionPlan | None = None
        self._renders = 0
        cls = {"fast": RegionalAttnProcessor, "reference": OmostReferenceProcessor}.get(processor)
        if cls is None:
            raise ValueError(f"processor must be 'fast' or 'reference', not {processor!r}")
        self.processor = processor
        self.unet = unet
        self._cls = cls
        self._install()

    def _install(self) -> None:
        procs = {}
        for name, current in self.unet.attn_processors.items():
            procs[name] = self._cls(self) if name.endswith("attn2.processor") else current
        self.unet.set_attn_processor(procs)

    def _installed(self) -> bool:
        """Whether the UNet's cross-attention still runs this object's processors (another backend
        made on the same model installs its own)."""
        return all(getattr(p, "owner", None) is self
                   for name, p in self.unet.attn_processors.items() if name.endswith("attn2.processor"))

    @contextmanager
    def active(self, plan: RegionPlan):
        if not self._installed():
            self._install()
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


class _RegionalProcessor:
    """What both processors share: their owner's plan, and diffusers' own attention outside a render."""

    def __init__(self, owner: RegionalAttention):
        self.owner = owner
        self._plain: AttnProcessor2_0 | None = None  # built on first use: diffusers is imported lazily

    def _plain_attention(self, attn, hidden_states, encoder_hidden_states, attention_mask):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self._plain = self._plain or AttnProcessor2_0()
        return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask)


class RegionalAttnProcessor(_RegionalProcessor):
    """The fused regional cross-attention (see the module docstring)."""

    def __init__(self, owner: RegionalAttention):
        super().__init__(owner)
        self._kv: tuple | None = None  # (render version, sequence length, projected keys and values)

    def _keys_values(self, attn, encoder_hidden_states: torch.Tensor, plan: RegionPlan, res: ResolutionPlan,
                     sequence_length: int):
        """Projected once per render and layer: the negative half's 77 keys and values, the
        positive half's keys scaled by s_j and values, gathered per pixel group if there are groups
        (their copies are bounded by MAX_GATHERED x the dense size, see ``_coverage_groups``)."""
        if self._kv is not None and self._kv[:2] == (plan.version, sequence_length):
            return self._kv[2]
        n = plan.images
        negative, positive = encoder_hidden_states[0, :NEGATIVE_TOKENS], encoder_hidden_states[n]
        neg_k, neg_v = (_heads(f(negative)[None], attn.heads) for f in (attn.to_k, attn.to_v))
        pos_k = _heads((attn.to_k(positive) * res.scale[:, None])[None], attn.heads)
        pos_v = _heads(attn.to_v(positive)[None], attn.heads)
        pos: list[tuple[int, torch.Tensor, torch.Tensor]] | tuple[torch.Tensor, torch.Tensor]
        if res.groups is not None:
            pos = [(count, pos_k.index_select(2, tok), pos_v.index_select(2, tok)) for count, tok in res.groups]
        else:
            pos = (pos_k, pos_v)
        self._kv = (plan.version, sequence_length, (neg_k, neg_v, pos))
        return self._kv[2]

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        plan = self.owner.plan
        if plan is None or encoder_hidden_states is None or hidden_states.ndim != 3:
            return self._plain_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
        residual = hidden_states
        n, length = plan.images, hidden_states.shape[1]
        res = plan.at_resolution(length, hidden_states.device, hidden_states.dtype)
        neg_k, neg_v, pos = self._keys_values(attn, encoder_hidden_states, plan, res, length)
        q_neg = _heads(attn.to_q(hidden_states[:n]), attn.heads)
        out_neg = _merge(F.scaled_dot_product_attention(q_neg, neg_k.expand(n, -1, -1, -1),
                                                        neg_v.expand(n, -1, -1, -1), scale=attn.scale))
        if res.groups is not None:  # pixels reordered so each group is one contiguous run
            assert res.order is not None and res.inverse is not None  # built together with the groups
            q_pos = _heads(attn.to_q(hidden_states[n:].index_select(1, res.order)), attn.heads)
            outs, start = [], 0
            for count, k, v in pos:
                outs.append(F.scaled_dot_product_attention(q_pos[:, :, start:start + count], k.expand(n, -1, -1, -1),
                                                           v.expand(n, -1, -1, -1), scale=attn.scale))
                start += count
            out_pos = _merge(torch.cat(outs, dim=2)).index_select(1, res.inverse)
        else:
            pos_k, pos_v = pos
            q_pos = _heads(attn.to_q(hidden_states[n:]), attn.heads)
            out_pos = _merge(F.scaled_dot_product_attention(q_pos, pos_k.expand(n, -1, -1, -1),
                                                            pos_v.expand(n, -1, -1, -1),
                                                            attn_mask=res.mask, scale=attn.scale))
        return _finish(attn, torch.cat([out_neg, out_pos]).to(hidden_states.dtype), residual)


class OmostReferenceProcessor(_RegionalProcessor):
    """Omost's cross-attention, literally: masks resized at every call, scores materialised."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        plan = self.owner.plan
        if plan is None or encoder_hidden_states is None:
            return self._plain_attention(attn, hidden_states, encoder_hidden_states, attention_mask)
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
