"""Constrained decoding cost on the offline tiny Llama, measured in one run: generated tokens per
second with and without the Canvas grammar (xgrammar logits processor), as a ratio, and the
grammar's compile time (once per backend, then cached)."""

from __future__ import annotations

import tempfile
import time

import torch

from omostc.compiler.grammar import Limits
from omostc.dev.tiny_llama import build_tiny_llama
from omostc.llm import SamplingOptions, TransformersChatBackend, new_conversation

TOKENS = 400
ROUNDS = 5


def tokens_per_second(backend: TransformersChatBackend, messages) -> float:
    backend._load()
    ids = backend.prompt_ids(messages)
    best = 0.0
    for seed in range(ROUNDS):
        torch.manual_seed(seed)
        kwargs = backend._generate_kwargs(ids, SamplingOptions(1.0, 1.0, TOKENS, seed))
        t0 = time.perf_counter()
        out = backend._model.generate(**kwargs)
        elapsed = time.perf_counter() - t0
        best = max(best, (out.shape[1] - ids.shape[1]) / elapsed)
    return best


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_llama(tmp)
        messages = new_conversation("a cat on a table")
        free = TransformersChatBackend(tmp, device_map="cpu", dtype="fp32")
        constrained = TransformersChatBackend(tmp, device_map="cpu", dtype="fp32", constrain=True, limits=Limits())
        constrained._load()
        t0 = time.perf_counter()
        constrained._logits_processors()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        constrained._logits_processors()
        cached_s = time.perf_counter() - t0
        free_tps, constrained_tps = tokens_per_second(free, messages), tokens_per_second(constrained, messages)
    print(f"grammar benchmark: tiny Llama (0.1M parameters), CPU, {TOKENS} new tokens, best of {ROUNDS}")
    print(f"  unconstrained                  {free_tps:8.0f} tokens/s")
    print(f"  under the Canvas grammar       {constrained_tps:8.0f} tokens/s")
    print(f"  constrained / unconstrained    {constrained_tps / free_tps:8.2f}x")
    print(f"  grammar compile                {compile_s * 1e3:8.1f} ms (first use), {cached_s * 1e3:.3f} ms after")


if __name__ == "__main__":
    main()
