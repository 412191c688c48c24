"""Text for FLUX.1: each layer's prompt as one T5 sequence, and the pooled CLIP vector.

A layer's prompt is its path in the prompt prefix tree and its sub-prompts in Omost's order
(prefixes, then suffixes), joined as one text: T5 reads 512 tokens, so there are no 77-token
bags. Each layer is tokenised when the scene is lowered (``t5_plan``: its ids, cut to the
maximum with a warning) and encoded by T5 once per render at its own length, or padded to the
maximum as the reference implementations do (``pad_to_max``). The pooled vector that
conditions the whole image is CLIP-L's, of the global layer's text (77 tokens, as diffusers').
Encodings are cached by token ids, bounded in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from omostc.diagnostics import Diagnostic, RenderError
from omostc.ir.model import Layer, SceneIR
from omostc.lru import LRU

# An encoded layer of FLUX.1's T5-XXL in bf16 is tokens x 4096 x 2 bytes: 4 MiB at 512 tokens,
# so 256 MiB holds 64 full-length layers (many more trimmed ones): a few scenes' worth.
TEXT_CACHE_BYTES = 256 * 2**20
CLIP_LENGTH = 77


def layer_text(layer: Layer) -> str:
    """One text of a layer: its prefixes then its sub-prompts (each already ``safe_str``-ed)."""
    return " ".join([*layer.prefixes, *layer.suffixes])


@dataclass
class T5Plan:
    """The layers' prompts as T5 token ids (a ``TextPlan`` of the IR), each ending in ``</s>``."""

    tokenizer: str
    texts: list[str]
    ids: list[list[int]]
    lengths: list[int]  # tokens each prompt has before any cut
    max_length: int

    def layer_dict(self, index: int, *, ids: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"t5_tokens": len(self.ids[index])}
        if self.lengths[index] > len(self.ids[index]):
            out["t5_tokens_cut"] = self.lengths[index] - len(self.ids[index])
        if ids:
            out["t5_ids"] = list(self.ids[index])
        return out


def plan_name(max_length: int) -> str:
    return f"tokenizer_2 (T5, {max_length} tokens)"


def t5_plan(layers: list[Layer], tokenizer, max_length: int) -> tuple[T5Plan, list[Diagnostic]]:
    """Each layer's T5 ids (``</s>`` included), cut to ``max_length`` as diffusers cuts them
    (the first ``max_length - 1`` tokens and ``</s>``), with a warning for each layer cut."""
    texts = [layer_text(layer) for layer in layers]
    full = tokenizer(texts, add_special_tokens=True).input_ids
    eos = tokenizer.eos_token_id
    ids, warnings = [], []
    for layer, row in zip(layers, full):
        if len(row) > max_length:
            warnings.append(Diagnostic(
                "warning", f"{layer.label()}: its prompt is {len(row)} T5 tokens, more than the {max_length} "
                f"FLUX reads (max_sequence_length); the last {len(row) - max_length} are cut", file=None))
            row = [*row[:max_length - 1], eos]
        ids.append(list(row))
    return T5Plan(plan_name(max_length), texts, ids, [len(r) for r in full], max_length), warnings


def plan_of(ir: SceneIR) -> T5Plan:
    """The IR's T5 plan; a RenderError for an IR lowered without one."""
    if not isinstance(ir.text, T5Plan):
        raise RenderError("this IR has no T5 tokens: lower it with the FLUX backend (backend.lower)")
    return ir.text


@dataclass
class FluxConditioning:
    """What the transformer needs from text, for one render."""

    layers: list[torch.Tensor]  # per IR layer, global first: (tokens, joint_attention_dim)
    pooled: torch.Tensor  # (pooled_projection_dim,): CLIP-L's, of the global layer

    @property
    def lengths(self) -> list[int]:
        return [int(t.shape[0]) for t in self.layers]


def _bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class FluxTextEncoder:
    def __init__(self, model, cache: LRU[tuple[int, ...], torch.Tensor] | None = None):
        self.model = model
        self.cache = cache if cache is not None else LRU(TEXT_CACHE_BYTES, size=_bytes)

    @property
    def device(self):
        return self.model.execution_device

    @torch.no_grad()
    def _t5(self, ids: tuple[int, ...]) -> torch.Tensor:
        te = self.model.text_encoder_2
        out = te(torch.tensor([ids], dtype=torch.long, device=self.device), output_hidden_states=False)[0]
        return out[0].to(dtype=te.dtype).clone()

    @torch.no_grad()
    def pooled(self, text: str) -> torch.Tensor:
        """CLIP-L's pooled output of ``text``, tokenised as diffusers' FluxPipeline does."""
        ids = self.model.tokenizer(text, padding="max_length", max_length=CLIP_LENGTH, truncation=True,
                                   return_tensors="pt").input_ids
        te = self.model.text_encoder
        return te(ids.to(self.device), output_hidden_states=False).pooler_output[0].to(dtype=te.dtype)

    def encode(self, ir: SceneIR, *, pad_to_max: bool = False) -> FluxConditioning:
        """Each layer's T5 hidden states (one T5 call per layer not in the cache) and the pooled
        vector of the global layer."""
        plan = plan_of(ir)
        pad = self.model.tokenizer_2.pad_token_id or 0
        keys = [tuple(row + [pad] * (plan.max_length - len(row)) if pad_to_max else row) for row in plan.ids]
        encoded = self.cache.get_many(keys, lambda missing: [self._t5(k) for k in missing])
        return FluxConditioning(layers=[encoded[k] for k in keys], pooled=self.pooled(plan.texts[0]))
