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

from dataclasses import dataclass
from typing import Sequence

from omostc.ir.clip.tokenize import BUDGET, CONTEXT


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
