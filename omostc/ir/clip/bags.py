"""Greedy sub-prompt bags (OMOST.md section 5): how a layer's prompt path fills 77-token chunks.

Every chunk of a layer starts with the layer's prefix tokens (the path from the root of the
prompt tree); the suffixes are packed greedily, in order, into the room left (75 - P).

Edge cases, defined here and documented for users:
* a suffix longer than 75 tokens is cropped to 75 (Omost does the same) - warned;
* when prefix + bag exceed 75 tokens the chunk is cut at 75 (Omost does the same) - warned;
  with a prefix of 75 tokens or more every suffix gets its own chunk and is cut away entirely;
* a layer with no suffixes gets one chunk holding the prefix alone (Omost fails there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omostc.diagnostics import Diagnostic
from omostc.ir.clip.tokenize import BUDGET, CONTEXT

if TYPE_CHECKING:
    from omostc.ir.model import Layer


def greedy_partition(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of ``lengths`` packed in order: a bag closes when the next item would overflow it."""
    bags: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i, n in enumerate(lengths):
        if total + n > budget:
            if current:
                bags.append(current)
            current, total = [i], n
        else:
            current.append(i)
            total += n
    if current:
        bags.append(current)
    return bags


@dataclass
class LayerTokens:
    """A layer's prompt path tokenised: prefix ids (all prefixes joined) and each suffix's ids."""

    prefix_ids: list[int]
    suffix_ids: list[list[int]]  # each cropped to 75
    cropped_suffixes: list[int]  # indices of suffixes longer than 75 tokens before cropping


def tokenize_layer(prefixes: Sequence[str], suffixes: Sequence[str], tokenizer) -> LayerTokens:
    encoded = tokenizer.encode([*prefixes, *suffixes])
    prefix_ids = [t for ids in encoded[: len(prefixes)] for t in ids]
    suffix_ids = encoded[len(prefixes):]
    cropped = [i for i, ids in enumerate(suffix_ids) if len(ids) > BUDGET]
    return LayerTokens(prefix_ids=prefix_ids, suffix_ids=[ids[:BUDGET] for ids in suffix_ids],
                       cropped_suffixes=cropped)


def layer_bags(tokens: LayerTokens) -> list[list[int]]:
    """The bags of a layer: lists of suffix indices; one empty bag when there are no suffixes."""
    bags = greedy_partition([len(ids) for ids in tokens.suffix_ids], BUDGET - len(tokens.prefix_ids))
    return bags or [[]]


def bag_text_ids(tokens: LayerTokens, bag: Sequence[int]) -> list[int]:
    """Prefix ids followed by the bag's suffix ids, before the cut at 75."""
    return tokens.prefix_ids + [t for i in bag for t in tokens.suffix_ids[i]]


def chunk(text_ids: Sequence[int], bos: int, eos: int, pad: int) -> list[int]:
    """``[BOS] + ids[:75] + [EOS]``, padded to 77 with the tokenizer's pad id."""
    ids = [bos, *text_ids[:BUDGET], eos]
    return ids + [pad] * (CONTEXT - len(ids))


@dataclass
class LayerBags:
    """One layer's prompt path in CLIP tokens: its prefix ids, each sub-prompt's ids, its bags."""

    prefix_ids: list[int]  # all prefixes, joined
    suffix_ids: list[list[int]]  # each cropped to 75
    bags: list[list[int]]  # sub-prompt indices per 77-token chunk

    def chunks(self, bos: int, eos: int, pad: int) -> list[list[int]]:
        """The 77-token id lists of this layer, one per bag, with a tokenizer's special ids."""
        tokens = LayerTokens(self.prefix_ids, self.suffix_ids, [])
        return [chunk(bag_text_ids(tokens, bag), bos, eos, pad) for bag in self.bags]


@dataclass
class ClipBags:
    """The IR's prompts as Stable-Diffusion-family models read them (a ``TextPlan``): per layer,
    77-token chunks that share the layer's prefix and pack its sub-prompts greedily."""

    tokenizer: str
    layers: list[LayerBags]

    def layer_dict(self, index: int, *, ids: bool = False) -> dict[str, Any]:
        layer = self.layers[index]
        tokens = {"prefix": len(layer.prefix_ids), "suffixes": [len(s) for s in layer.suffix_ids]}
        out: dict[str, Any] = {"tokens": tokens, "bags": [list(b) for b in layer.bags]}
        if ids:
            out["ids"] = {"prefix": list(layer.prefix_ids), "suffixes": [list(s) for s in layer.suffix_ids]}
        return out


def clip_bags(layers: Sequence[Layer], tokenizer, second=None) -> tuple[ClipBags, list[Diagnostic]]:
    """The bags of every layer, and a warning for each sub-prompt or chunk that had to be cut.

    ``second``: the tokenizer of a second text encoder that reads the same bags (a model
    folder's ``tokenizer_2``); a text it splits into a different number of tokens is warned, naming the
    layer and the sub-prompt, because its chunks then hold other text than the first encoder's
    (Omost asserts there). OpenCLIP's tokenizer there reads ``!`` as its pad token: ``Wow!``."""
    texts = [t for layer in layers for t in (*layer.prefixes, *layer.suffixes)]
    tokenizer.encode(texts)  # one batch
    warnings: list[Diagnostic] = [] if second is None else _length_warnings(layers, tokenizer, second, texts)
    planned = []
    for layer in layers:
        tokens = tokenize_layer(layer.prefixes, layer.suffixes, tokenizer)
        bags = layer_bags(tokens)
        planned.append(LayerBags(tokens.prefix_ids, tokens.suffix_ids, bags))
        warnings += [_warning(layer, f"sub-prompt {i} is longer than {BUDGET} tokens; cropped to {BUDGET}")
                     for i in tokens.cropped_suffixes]
        if len(tokens.prefix_ids) >= BUDGET and layer.suffixes:
            warnings.append(_warning(layer, f"its prefix alone is {len(tokens.prefix_ids)} tokens; "
                                            "no sub-prompt fits beside it, so all of them are cut"))
            continue
        for j, bag in enumerate(bags):
            n = len(bag_text_ids(tokens, bag))
            if n > BUDGET:
                warnings.append(_warning(layer, f"chunk {j} is {n} tokens; the last {n - BUDGET} are cut"))
    return ClipBags(tokenizer.name, planned), warnings


def _warning(layer: Layer, message: str) -> Diagnostic:
    return Diagnostic("warning", f"{layer.label()}: {message}", file=None)


def _length_warnings(layers: Sequence[Layer], first, second, texts: list[str]) -> list[Diagnostic]:
    counts = {t: (len(a), len(b)) for t, a, b in zip(texts, first.encode(texts), second.encode(texts))}
    out = []
    for layer in layers:
        named = [*((f"prefix {i}", t) for i, t in enumerate(layer.prefixes)),
                 *((f"sub-prompt {i}", t) for i, t in enumerate(layer.suffixes))]
        for what, text in named:
            n1, n2 = counts[text]
            if n1 != n2:
                excerpt = text if len(text) <= 60 else text[:57] + "..."
                out.append(_warning(layer, f"{what} ({excerpt!r}) is {n1} tokens to {first.name} but {n2} to "
                                           f"{second.name}, which reads '!' as its padding token; the two text "
                                           "encoders see different text there"))
    return out
