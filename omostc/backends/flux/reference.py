"""The regional joint attention's definition, written literally (for tests and the ``reference``
processor): the (S, S) joint mask over [layer texts in order, image tokens], the scores
materialised, masked, softmax; image rows blended with the base pass (image over the global text
and the image). ``attention.py`` computes the same function without the (S, S) tensors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from omostc.backends.flux.attention import RegionalAttentionOptions
from omostc.backends.flux.fused import area_factors


def joint_mask(text_lengths: Sequence[int], masks: torch.Tensor) -> torch.Tensor:
    """The (S, S) boolean joint mask over [layer texts in order, image tokens]: True where a query
    (row) may attend a key (column). ``masks`` is (layers, image tokens) bool, global first."""
    lengths = torch.tensor(list(text_lengths))
    layer = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    t, n = int(lengths.sum()), masks.shape[1]
    mask = torch.zeros(t + n, t + n, dtype=torch.bool)
    mask[:t, :t] = layer[:, None] == layer[None, :]  # each text block sees itself
    sees = masks.bool().cpu()[layer].clone()  # (T, N): the image tokens each text token's layer covers
    sees[layer == 0] = True  # the global text sees every image token
    mask[:t, t:] = sees
    mask[t:, :t] = sees.T
    mask[t:, t:] = True  # image to image: open
    return mask


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, text_lengths: Sequence[int],
                        masks: torch.Tensor, options: RegionalAttentionOptions, scale: float, *,
                        injected: bool) -> torch.Tensor:
    """The definition, literally, on (B, H, S, D) tensors in the stream's order [layer texts, image]:
    scores materialised, masked, softmax; image rows blended with the base pass."""
    tg, t = text_lengths[0], sum(text_lengths)
    s = q.shape[2]
    scores = (q @ k.transpose(-1, -2)) * scale
    mask = joint_mask(text_lengths, masks).to(q.device) if injected else torch.ones(s, s, dtype=torch.bool,
                                                                                 device=q.device)
    if injected and options.area_scaling:
        lengths = torch.tensor(list(text_lengths))
        factor = area_factors(masks, options.area_scale_max)[torch.repeat_interleave(torch.arange(len(lengths)),
                                                                                     lengths)]
        scores[:, :, t:, tg:t] = scores[:, :, t:, tg:t] * factor[tg:].to(scores)
    out = scores.masked_fill(~mask, -math.inf).softmax(dim=-1) @ v
    if options.base_ratio > 0:
        base_mask = torch.zeros(s, s, dtype=torch.bool, device=q.device)
        base_mask[:, :tg] = True
        base_mask[:, t:] = True
        base = scores.masked_fill(~base_mask, -math.inf).softmax(dim=-1) @ v
        out[:, :, t:] = (1 - options.base_ratio) * out[:, :, t:] + options.base_ratio * base[:, :, t:]
    return out
