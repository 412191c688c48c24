"""The fused regional joint attention (``attention.py`` installs it; ``reference.py`` is its
definition written literally). Nothing here materialises a (heads, tokens, tokens) tensor.

The stream is reordered once per block into the fused order [region texts, global text, image
tokens grouped by the set of regions covering them] (one gather, folded into the copies the
projections make anyway), so that every part below is a contiguous slice:

- global text and image queries over global text and image keys: plain FLUX's attention, no
  mask, through a kernel that also returns the log-sum-exp (``attention_lse``). Its image rows
  are also the base pass;
- image queries of each coverage group over the text keys of the regions covering it: the same
  kernel, no mask. The two softmaxes merge exactly, ``out = out_a + w (out_b - out_a)``,
  ``w = sigmoid(lse_b - lse_a)``, and the base blend only scales w by (1 - base_ratio);
- each region's text queries over its own text keys and the image keys inside its mask,
  gathered (no mask), or with a (region text x stream) mask when regions are many.

With too many coverage groups the image queries attend all region-text keys with a mask instead
(the CPU flash kernel takes a mask and returns the log-sum-exp; elsewhere a chunked fp32
computation). Kernels: CUDA fp16/bf16 flash attention (``_scaled_dot_product_flash_attention``,
which takes no mask, used only unmasked); CUDA fp32 memory-efficient attention; CPU the flash
CPU kernel. Masked SDPA calls go through ``F.scaled_dot_product_attention``, which picks the CPU
flash kernel or, on CUDA, memory-efficient attention (flash takes no mask). Where no log-sum-exp
kernel runs, the image queries attend all keys with an (image x stream) mask and the base pass
is a second attention: the same function, slower.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Coverage groups and region texts attended one by one (no mask, fewer pairs) up to these counts;
# beyond, one masked attention. On a GPU each small call costs ~10 kernel launches, more than the
# pairs it saves: there a few only.
MAX_GROUPS, MAX_GROUPS_GPU = 32, 4
MAX_GATHERED_REGIONS, MAX_GATHERED_REGIONS_GPU = 16, 4
GATHER_SAVING = 0.7  # ... and only when gathering does at most this share of the masked work
CHUNK_ELEMENTS = 1 << 24  # the chunked fallback's scores: 64 MiB of fp32 at a time
CHECK_TOLERANCE = 0.05  # first call off the CPU: fused vs masked path, max error / max value


def area_factors(masks: torch.Tensor, cap: float) -> torch.Tensor:
    """Per layer: Omost's s = image tokens / tokens in the layer's mask, capped (the global layer: 1)."""
    counts = masks.bool().sum(dim=1).clamp(min=1).to(torch.float32)
    return (masks.shape[1] / counts).clamp(max=cap)


@dataclass
class Group:
    """Image rows [start, end) of the fused order, covered by the same regions, and those
    regions' text keys (rows of the region-text block: a slice when contiguous)."""

    start: int
    end: int
    tokens: slice | torch.Tensor


@dataclass
class FusedPlan:
    """The fused path's layout and masks at one device and dtype, built once per render and resolution."""

    t_global: int
    t_regions: int
    images: int
    order: torch.Tensor  # (S,) stream position of each fused position
    image_order: torch.Tensor  # (N,) image token of each fused image row
    groups: list[Group] | None  # covered coverage groups; None: one masked attention
    region_text: list[tuple[int, int]]  # each region's rows in the region-text block
    region_pixels: list[torch.Tensor] | None  # each region's fused image rows; None: one masked attention
    text_mask: torch.Tensor  # (T_R, S) additive 0 / -inf, fused order
    image_bias: torch.Tensor  # (N, T_R) additive 0 / -inf: the region texts each fused image row sees
    uncovered: torch.Tensor  # (N,) additive 0 / -inf: -inf on rows in no region
    key_scale: torch.Tensor | None  # (T_R, 1) area factors of the region text keys, or None
    covered_from: int = 0  # fused image rows from here on are in some region (the uncovered group sorts first)
    split: bool = True  # whether the log-sum-exp kernels run here (False once they raised or disagreed)
    masked_lse: bool = True  # whether the masked log-sum-exp kernel runs here (else the chunked path)
    checked: bool = False  # off the CPU: whether the first call was checked against the masked path

    @property
    def t_text(self) -> int:
        return self.t_global + self.t_regions

    @classmethod
    def build(cls, text_lengths: Sequence[int], masks: torch.Tensor, device, dtype,
              area_scale_max: float | None = None) -> FusedPlan:
        device = torch.device(device)
        tg, lengths = int(text_lengths[0]), [int(n) for n in text_lengths[1:]]
        tr, n = sum(lengths), masks.shape[1]
        regions = masks.bool().cpu()[1:]  # (R, N)
        ends = torch.tensor(lengths).cumsum(0).tolist()
        ranges = list(zip([0] + ends[:-1], ends))
        layer = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths, dtype=torch.long))
        signatures, group_of = torch.unique(regions.T, dim=0, return_inverse=True)
        image_order = torch.argsort(group_of, stable=True)
        position = torch.argsort(image_order)  # fused row of each image token
        counts = torch.bincount(group_of, minlength=len(signatures)).tolist()
        groups, start, covered_from = [], 0, 0
        for signature, count in zip(signatures, counts):
            if not signature.any():
                covered_from = count  # torch.unique sorts the all-False signature first
            members = torch.nonzero(signature).flatten().tolist()
            if members:
                rows = [torch.arange(*ranges[r]) for r in members]
                tokens = torch.cat(rows)
                contiguous = bool(torch.equal(tokens, torch.arange(int(tokens[0]), int(tokens[0]) + len(tokens))))
                groups.append(Group(start, start + count, slice(int(tokens[0]), int(tokens[0]) + len(tokens))
                                    if contiguous else tokens.to(device)))
            start += count
        sees = regions[layer].T[image_order]  # (N, T_R), fused rows
        text_mask = torch.zeros(tr, tr + tg + n, dtype=torch.bool)
        text_mask[:, :tr] = layer[:, None] == layer[None, :]
        text_mask[:, tr + tg:] = sees.T
        pixels = [torch.sort(position[regions[r]]).values for r in range(len(lengths))]
        max_groups, max_gathered = ((MAX_GROUPS, MAX_GATHERED_REGIONS) if device.type == "cpu"
                                    else (MAX_GROUPS_GPU, MAX_GATHERED_REGIONS_GPU))
        gathered = sum(t * (t + len(p)) for t, p in zip(lengths, pixels))
        gather = len(lengths) <= max_gathered and gathered <= GATHER_SAVING * tr * (tr + tg + n)
        zero = torch.zeros((), dtype=torch.float32)
        scale = None
        if area_scale_max is not None:
            scale = area_factors(masks, area_scale_max)[1:][layer][:, None].to(device, dtype)
        width = -(-tr // 16) * 16  # rows padded to 16 elements: the CUDA memory-efficient kernel's alignment
        bias = torch.full((n, width), -math.inf)
        bias[:, :tr] = torch.where(sees, zero, -math.inf)
        order = torch.cat([torch.arange(tg, tg + tr), torch.arange(tg), tg + tr + image_order])
        return cls(t_global=tg, t_regions=tr, images=n, order=order.to(device), image_order=image_order.to(device),
                   groups=groups if len(groups) <= max_groups else None, region_text=ranges,
                   region_pixels=[p.to(device) for p in pixels] if gather else None,
                   text_mask=torch.where(text_mask, zero, -math.inf).to(device, dtype),
                   image_bias=bias.to(device, dtype)[:, :tr],
                   uncovered=torch.where(sees.any(dim=1), zero, -math.inf).to(device), key_scale=scale,
                   covered_from=covered_from)

    def to_fused(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S, H, D) in the stream's order to (B, H, S, D) in the fused order."""
        return x.index_select(1, self.order).transpose(1, 2)

    def to_stream(self, regions: torch.Tensor, glob: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """The fused parts, (B, H, L, D) each, to one (B, S, H, D) in the stream's order."""
        b, h, _, d = image.shape
        tg, t = self.t_global, self.t_text
        out = image.new_empty(b, t + self.images, h, d)
        out[:, :tg] = glob.transpose(1, 2)
        out[:, tg:t] = regions.transpose(1, 2)
        out[:, t:].index_copy_(1, self.image_order, image.transpose(1, 2))
        return out


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                  bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SDPA that also returns the log-sum-exp (B, H, L) in fp32, through torch's own kernels (the
    ones ``F.scaled_dot_product_attention`` calls). ``bias``: additive (L, keys), the query's dtype;
    on CUDA its rows 16-aligned in memory. Raises RuntimeError where no kernel fits."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False, attn_mask=bias,
                                                                          scale=scale)
    if q.device.type != "cuda":
        raise RuntimeError("no log-sum-exp attention kernel for this device")
    if bias is None and q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] <= 256 and q.shape[-1] % 8 == 0:
        out = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False, scale=scale)
        return out[0], out[1]
    if bias is not None:
        bias = bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    out = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, bias, True, 0.0, False, scale=scale)
    return out[0], out[1][..., :q.shape[2]]  # the efficient kernel pads its log-sum-exp rows


def region_text_chunked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, scale: float,
                        chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Image queries over all region-text keys with an additive mask, in fp32, by chunks of at most
    ``chunk_elements`` scores: (out, lse); rows that see no key get lse -inf and out 0."""
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


def _merge(image: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor, keep: float) -> None:
    """Into ``image`` (the base pass's rows, in place): the softmax over both key sets, then the blend."""
    weight = torch.sigmoid(lse_b - lse_a) * keep
    a = image.float()
    image.copy_(torch.addcmul(a, weight[..., None], out_b.float() - a))


def _masked_region_part(q, k, v, plan: FusedPlan, scale: float):
    """Covered image rows over all region-text keys with the mask: one kernel where it takes a mask
    and returns the log-sum-exp, else the chunked fp32 computation."""
    bias = plan.image_bias[plan.covered_from:]
    if plan.masked_lse:
        try:
            return attention_lse(q, k, v, scale, bias)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:
            plan.masked_lse = False
    return region_text_chunked(q, k, v, bias, scale)


def _check(q, k, v, plan: FusedPlan, scale: float, base_ratio: float, image: torch.Tensor) -> None:
    """Once per plan off the CPU (kernels this project's tests cannot run): the fused image rows
    against the masked path's; on disagreement the masked path from now on, with a warning."""
    plan.checked = True
    _, _, expected = _masked_path(q, k, v, plan, scale, base_ratio)
    error = float((image.float() - expected.float()).abs().max() / expected.float().abs().max().clamp(min=1e-6))
    if not error <= CHECK_TOLERANCE:
        warnings.warn(f"regional attention: the fused kernels disagree with the masked path on {q.device} "
                      f"(relative error {error:.3g}); using the masked path", RuntimeWarning, stacklevel=3)
        plan.split = False


def _region_text_queries(q, k, v, plan: FusedPlan, scale: float) -> torch.Tensor:
    tr, t = plan.t_regions, plan.t_text
    if plan.region_pixels is None:
        return F.scaled_dot_product_attention(q[:, :, :tr], k, v, attn_mask=plan.text_mask, scale=scale)
    outs = []
    for (start, end), rows in zip(plan.region_text, plan.region_pixels):
        keys = torch.cat([k[:, :, start:end], k[:, :, t:].index_select(2, rows)], dim=2)
        values = torch.cat([v[:, :, start:end], v[:, :, t:].index_select(2, rows)], dim=2)
        outs.append(F.scaled_dot_product_attention(q[:, :, start:end], keys, values, scale=scale))
    return torch.cat(outs, dim=2)


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: FusedPlan, scale: float, *,
                    injected: bool, base_ratio: float, split: bool = True):
    """Regional joint attention on (B, H, S, D) in the fused order: (region texts, global text,
    image) outputs, (B, H, L, D) each, in the fused order."""
    tr, tg, t = plan.t_regions, plan.t_global, plan.t_text
    qa, ka, va = q[:, :, tr:], k[:, :, tr:], v[:, :, tr:]  # global text and image: plain FLUX
    if not injected:  # off the block interval: open attention over the whole stream, blended with the base
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        image = out[:, :, t:]
        if base_ratio > 0:
            image = torch.lerp(image, F.scaled_dot_product_attention(q[:, :, t:], ka, va, scale=scale), base_ratio)
        return out[:, :, :tr], out[:, :, tr:t], image
    out_regions = _region_text_queries(q, k, v, plan, scale)
    kr = k[:, :, :tr] if plan.key_scale is None else k[:, :, :tr] * plan.key_scale
    vr = v[:, :, :tr]
    if split and plan.split:
        try:
            out_a, lse_a = attention_lse(qa, ka, va, scale)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError:  # no such kernel here: the masked path from now on
            plan.split = False
    if split and plan.split:
        image, lse_image = out_a[:, :, tg:], lse_a[:, :, tg:]
        if plan.groups is not None:
            for g in plan.groups:
                out_b, lse_b = attention_lse(q[:, :, t + g.start:t + g.end], kr[:, :, g.tokens], vr[:, :, g.tokens],
                                             scale)
                _merge(image[:, :, g.start:g.end], lse_image[:, :, g.start:g.end], out_b, lse_b, 1 - base_ratio)
        else:  # one masked attention over the covered rows (so that every row sees some key)
            c = plan.covered_from
            out_b, lse_b = _masked_region_part(q[:, :, t + c:], kr, vr, plan, scale)
            _merge(image[:, :, c:], lse_image[:, :, c:], out_b, lse_b, 1 - base_ratio)
        if not plan.checked and q.device.type != "cpu":
            _check(q, k, v, plan, scale, base_ratio, image)
        return out_regions, out_a[:, :, :tg], image
    _, glob, image = _masked_path(q, k, v, plan, scale, base_ratio)
    return out_regions, glob, image


def _masked_path(q, k, v, plan: FusedPlan, scale: float, base_ratio: float):
    """Without log-sum-exp kernels: image queries over all keys with an (image x stream) mask, and
    the base pass as a second attention. Returns (None, global text, image) outputs."""
    tr, tg, t = plan.t_regions, plan.t_global, plan.t_text
    out_a = F.scaled_dot_product_attention(q[:, :, tr:], k[:, :, tr:], v[:, :, tr:], scale=scale)
    image_mask = torch.cat([plan.image_bias.isfinite(), torch.ones(plan.images, tg + plan.images, dtype=torch.bool,
                                                                    device=q.device)], dim=1)
    keys = k if plan.key_scale is None else torch.cat([k[:, :, :tr] * plan.key_scale, k[:, :, tr:]], dim=2)
    image = F.scaled_dot_product_attention(q[:, :, t:], keys, v, attn_mask=image_mask, scale=scale)
    return None, out_a[:, :, :tg], torch.lerp(image, out_a[:, :, tg:], base_ratio)
