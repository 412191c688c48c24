"""Decoding under the Canvas grammar within a token budget, for a model run here.

xgrammar allows the tokens the grammar allows; on top of that, a token is allowed only if the
shortest completion of the program after it (``omostc.compiler.budget.Completion``, in bytes, so
at most as many tokens) fits in the tokens left after it. The text can then always be closed:
the first byte of the shortest completion is itself such a token (byte-level vocabularies have
every byte), so there is always one, and the answer is a whole program when the budget ends.

The check costs nothing while the budget is far from the shortest completion (further than
``JUMP`` bytes: a token cannot raise the shortest completion by more than its length plus the
longest rule); nearer, inside a string or comment, tokens of plain text keep the shortest
completion as it is and are let through together; the others are checked one by one.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from omostc.compiler.budget import PLAIN, Completion, State


def plain_tokens(token_bytes: list[bytes]) -> torch.Tensor:
    """Which tokens are whole printable characters with no quote or backslash."""

    def plain(data: bytes) -> bool:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return bool(text) and all(ord(ch) in PLAIN or (ord(ch) >= 0xA0 and ch.isprintable()) for ch in text)

    return torch.tensor([plain(b) for b in token_bytes], dtype=torch.bool)


class BudgetedGrammar(LogitsProcessor):
    """xgrammar's mask, then the closing rule. One instance per ``generate()`` call."""

    def __init__(self, compiled: Any, completion: Completion, token_bytes: list[bytes], plain: torch.Tensor,
                 prompt_length: int, max_new_tokens: int):
        import xgrammar as xgr

        self.xgr, self.compiled, self.completion = xgr, compiled, completion
        self.token_bytes, self.plain = token_bytes, plain
        self.stops = set(compiled.tokenizer_info.stop_token_ids)
        self.prompt_length, self.max_new_tokens = prompt_length, max_new_tokens
        self.jump = 2 * (max(len(b) for b in token_bytes) + completion.longest_item)
        self.matchers: list[Any] = []
        self.states: list[State] = []
        self.bitmask: Any = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        batch = input_ids.shape[0]
        generated = input_ids.shape[1] - self.prompt_length
        if not self.matchers:
            self.matchers = [self.xgr.GrammarMatcher(self.compiled) for _ in range(batch)]
            self.states = [self.completion.start() for _ in range(batch)]
            self.bitmask = self.xgr.allocate_token_bitmask(batch, self.compiled.tokenizer_info.vocab_size)
        elif generated > 0:
            for i, matcher in enumerate(self.matchers):
                if not matcher.is_terminated():
                    token = int(input_ids[i, -1])
                    if not matcher.accept_token(token):
                        raise RuntimeError(f"the grammar refused token {token} it had allowed")
                    self.states[i] = self.completion.feed(self.states[i], self.token_bytes[token])
        for i, matcher in enumerate(self.matchers):
            if not matcher.is_terminated():
                matcher.fill_next_token_bitmask(self.bitmask, i)
        device = scores.device
        work = scores.to("cpu") if device.type != "cuda" else scores
        self.xgr.apply_token_bitmask_inplace(work, self.bitmask.to(work.device))
        left = self.max_new_tokens - generated - 1  # tokens after this one
        for i, matcher in enumerate(self.matchers):
            if not matcher.is_terminated():
                self._close(work[i], self.states[i], left)
        return work.to(device)

    def _close(self, row: torch.Tensor, state: State, left: int) -> None:
        """Leave only the tokens after which the program can still be completed in ``left`` tokens."""
        shortest = self.completion.shortest(state)
        if shortest is None or shortest + self.jump <= left:
            return
        finite = torch.isfinite(row)
        plain = torch.zeros_like(finite)
        plain[: min(row.shape[0], self.plain.shape[0])] = self.plain[: row.shape[0]]
        together = shortest <= left and self.completion.in_content(state)
        keep = plain & finite if together else torch.zeros_like(finite)
        best, fallback = None, None
        for token in torch.nonzero(finite & ~keep).flatten().tolist():
            if token in self.stops:
                after: int | None = 0  # xgrammar allows a stop token only where the program is whole
            else:
                after = self.completion.shortest(self.completion.feed(state, self.token_bytes[token]))
            if after is None:
                continue
            if after <= left:
                keep[token] = True
            elif best is None or after < best:
                best, fallback = after, token
        if not keep.any() and fallback is not None:  # cannot happen with a byte-level vocabulary
            keep[fallback] = True
        if keep.any():
            row.masked_fill_(~keep, float("-inf"))
