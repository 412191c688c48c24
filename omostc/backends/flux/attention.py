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

Where this differs from the reference code (pipeline_flux_regional.py), on purpose: there the
base prompt is not in the regional stream but runs as a second pass with its own text stream
(and, in the single-stream blocks, its own image stream), costing a second transformer's
attention; here the global layer's text is in the stream and the base pass is the global text
and image part of the same attention, which the fused path gets for free. The reference also
restricts image-to-image attention to tokens of the same region (or both outside every region);
here it stays open, as issue 15 specifies. Its regional prompts are padded to 512 tokens each;
here each keeps its own length unless the backend pads.

The fused path (``fused.py``) never builds a (heads, tokens, tokens) tensor: it splits each
image query's softmax into plain FLUX's attention (global text and image keys, which is also the
base pass) and the region texts covering it, each through a kernel that returns its log-sum-exp,
and merges them exactly; see there for the kernels that take masks and those that do not.

``reference=True`` selects the literal processor: the (S, S) joint mask and the scores
materialised, softmax, for tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from omostc.backends.flux.fused import FusedPlan, fused_attention

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
        self._plans: dict[tuple[str, torch.dtype], FusedPlan] = {}
        self._rope: tuple = (None, None)  # (the transformer's rotary tables of this step, them in the fused order)

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

    def plan(self, device, dtype) -> FusedPlan:
        key = (str(device), dtype)
        if key not in self._plans:
            o = self.options
            self._plans[key] = FusedPlan.build(self.text_lengths, self.masks, device, dtype,
                                               o.area_scale_max if o.area_scaling else None)
        return self._plans[key]

    def fused_rope(self, rope, plan: FusedPlan):
        """The rotary tables (cos, sin), (S, D) each, in the fused order: once per transformer call."""
        if rope is None:
            return None
        if self._rope[0] is not rope[0]:
            self._rope = (rope[0], tuple(x.index_select(0, plan.order.to(x.device)) for x in rope))
        return self._rope[1]

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
        tg, t = owner.text_lengths[0], sum(owner.text_lengths)
        scale = attn.head_dim ** -0.5
        injected = owner.injected(self.kind, self.index)
        if owner.options.reference:
            from omostc.backends.flux.reference import reference_attention

            q, k, v = (x.transpose(1, 2) for x in _project(attn, hidden_states, encoder_hidden_states,
                                                            image_rotary_emb))
            out = reference_attention(q, k, v, owner.text_lengths, owner.masks, owner.options, scale,
                                      injected=injected).transpose(1, 2)
        else:  # projected straight into the fused order: one gather of the block's input
            plan = owner.plan(hidden_states.device, hidden_states.dtype)
            if encoder_hidden_states is None:
                hidden_states = hidden_states.index_select(1, plan.order)
            else:
                hidden_states = hidden_states.index_select(1, plan.image_order)
                encoder_hidden_states = torch.cat([encoder_hidden_states[:, tg:], encoder_hidden_states[:, :tg]], 1)
            q, k, v = (x.transpose(1, 2) for x in _project(attn, hidden_states, encoder_hidden_states,
                                                            owner.fused_rope(image_rotary_emb, plan)))
            parts = fused_attention(q, k, v, plan, scale, injected=injected, base_ratio=owner.options.base_ratio,
                                    split=owner.split_softmax)
            out = plan.to_stream(*parts)
        out = out.flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is None:
            return out
        text_out, image_out = out[:, :t], out[:, t:]
        image_out = attn.to_out[1](attn.to_out[0](image_out.contiguous()))
        return image_out, attn.to_add_out(text_out.contiguous())
