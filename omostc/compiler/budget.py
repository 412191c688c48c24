"""The Canvas grammar against a token budget: how short a program can be, how long one can be,
and, for text written so far, the shortest way to finish it.

A token is at least one byte, so a completion of ``n`` bytes takes at most ``n`` tokens. Two
ways keep a constrained answer within ``--max-tokens``:

* a model run here decodes under the grammar with a *closing* rule (``omostc.llm.budget``): a
  token is allowed only if the shortest completion after it still fits in the tokens left.
  ``Completion`` follows the text and gives that length;
* a server takes only a grammar: ``server_limits`` bounds it so that its longest program, in
  bytes, fits the budget, whichever path the model takes.

``MIN_MAX_TOKENS`` is the smallest budget a constrained answer is asked for: the longest program
of the smallest grammar (a global description with empty strings, 181 bytes) fits it, and the
shortest program (149 bytes) with room to spare.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache, lru_cache

from omostc.compiler.grammar import Chars, Item, Limits, Lit, Ref, Rep, Rules, canvas_rules

MIN_MAX_TOKENS = 200

Frame = tuple[str, int, int, int, int]  # rule, alternative, item index, count or offset, pending UTF-8 bytes
Stack = tuple[Frame, ...]
State = frozenset[Stack]

_CACHE = 200_000  # closures and steps remembered per walker before starting afresh
# bytes that are text inside a string or a comment: printable ASCII but quotes and backslash
PLAIN = frozenset(b for b in range(0x20, 0x7F) if chr(b) not in "'\"\\")


def _lead(byte: int) -> int:
    """Continuation bytes after a UTF-8 lead byte; -1 for a byte that cannot start a character."""
    if byte < 0x80:
        return 0
    return 1 if 0xC2 <= byte < 0xE0 else 2 if 0xE0 <= byte < 0xF0 else 3 if 0xF0 <= byte < 0xF5 else -1


class Completion:
    """The grammar as a byte-level automaton: a state is the set of places the text so far can
    stand in the grammar (stacks of rule positions); ``shortest`` is the length in bytes of the
    shortest text that completes a program from it (0: the text is a program)."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self._min: dict[tuple[str, int, int], int] = {}
        self._closures: dict[Stack, frozenset[Stack]] = {}
        self._steps: dict[tuple[Stack, int], frozenset[Stack]] = {}
        self._content: dict[frozenset, bool] = {}
        self._remainders: dict[Stack, int] = {}
        self.longest_item = max(self._rule_min(r) for r in rules)

    # --- lengths ---------------------------------------------------------------------------------

    def _item_min(self, item: Item) -> int:
        if isinstance(item, Lit):
            return len(item.text.encode("utf-8"))
        if isinstance(item, Chars):
            return 1
        if isinstance(item, Ref):
            return self._rule_min(item.rule)
        return item.low * self._item_min(item.item)

    def _rule_min(self, rule: str) -> int:
        key = (rule, -1, 0)
        if key not in self._min:
            self._min[key] = min(self._suffix(rule, a, 0) for a in range(len(self.rules[rule])))
        return self._min[key]

    def _suffix(self, rule: str, alt: int, idx: int) -> int:
        key = (rule, alt, idx)
        if key not in self._min:
            self._min[key] = sum(self._item_min(i) for i in self.rules[rule][alt][idx:])
        return self._min[key]

    def _remaining(self, stack: Stack) -> int:
        if stack in self._remainders:
            return self._remainders[stack]
        if len(self._remainders) > _CACHE:
            self._remainders.clear()
        total = 0
        for depth, (rule, alt, idx, n, pending) in enumerate(reversed(stack)):
            item = self.rules[rule][alt][idx]
            if depth == 0:  # a byte-consuming position
                if isinstance(item, Lit):
                    total += len(item.text.encode("utf-8")) - n
                elif isinstance(item, Chars):
                    total += pending if n else 1
                else:
                    assert isinstance(item, Rep)
                    total += pending + max(0, item.low - n)
            elif isinstance(item, Rep):  # an iteration in progress above
                total += max(0, item.low - n - 1) * self._item_min(item.item)
            total += self._suffix(rule, alt, idx + 1)
        self._remainders[stack] = total
        return total

    def shortest(self, state: State) -> int | None:
        """Bytes of the shortest completion; None when the text has left the grammar."""
        return min((self._remaining(s) for s in state), default=None)

    # --- moving ----------------------------------------------------------------------------------

    def start(self) -> State:
        return frozenset().union(*(self._closure((("root", a, 0, 0, 0),)) for a in range(len(self.rules["root"]))))

    def feed(self, state: State, data: bytes) -> State:
        for byte in data:
            if not state:
                break
            state = frozenset().union(*(self._step(s, byte) for s in state))
        return state

    def _closure(self, stack: Stack) -> frozenset[Stack]:
        """The byte-consuming positions (and ``()``, the end) reachable from ``stack`` without input."""
        if stack in self._closures:
            return self._closures[stack]
        out: set[Stack] = set()
        rule, alt, idx, n, pending = stack[-1]
        items = self.rules[rule][alt]
        below = stack[:-1]
        if idx == len(items):
            if not below:
                out.add(())
            else:
                prule, palt, pidx, pn, _ = below[-1]
                step = (pidx, pn + 1) if isinstance(self.rules[prule][palt][pidx], Rep) else (pidx + 1, 0)
                out |= self._closure(below[:-1] + ((prule, palt, *step, 0),))
        else:
            item = items[idx]
            advance = below + ((rule, alt, idx + 1, 0, 0),)
            if isinstance(item, Lit):
                out |= {stack} if n < len(item.text.encode("utf-8")) else self._closure(advance)
            elif isinstance(item, Chars):
                out |= {stack} if n == 0 or pending else self._closure(advance)
            elif isinstance(item, Ref):
                for a in range(len(self.rules[item.rule])):
                    out |= self._closure(stack + ((item.rule, a, 0, 0, 0),))
            elif pending:
                out.add(stack)
            else:
                if n >= item.low:
                    out |= self._closure(advance)
                if item.high is None or n < item.high:
                    if isinstance(item.item, Chars):
                        out.add(stack)
                    else:
                        assert isinstance(item.item, Ref), "a repetition holds a rule or characters"
                        for a in range(len(self.rules[item.item.rule])):
                            out |= self._closure(stack + ((item.item.rule, a, 0, 0, 0),))
        result = frozenset(out)
        if len(self._closures) > _CACHE:
            self._closures.clear()
        self._closures[stack] = result
        return result

    def _step(self, stack: Stack, byte: int) -> frozenset[Stack]:
        if not stack:
            return frozenset()
        key = (stack, byte)
        if key in self._steps:
            return self._steps[key]
        rule, alt, idx, n, pending = stack[-1]
        item = self.rules[rule][alt][idx]
        result: frozenset[Stack] = frozenset()
        if isinstance(item, Lit):
            if item.text.encode("utf-8")[n] == byte:
                result = self._closure(stack[:-1] + ((rule, alt, idx, n + 1, 0),))
        else:
            chars = item if isinstance(item, Chars) else item.item if isinstance(item, Rep) else None
            assert isinstance(chars, Chars)
            frame: Frame | None = None
            if pending:
                if 0x80 <= byte < 0xC0:
                    frame = (rule, alt, idx, n, pending - 1)
            elif (extra := _lead(byte)) > 0 or (
                    extra == 0 and byte >= 0x20 and byte != 0x7F and chr(byte) not in chars.excluded):
                frame = (rule, alt, idx, n + 1, extra)
            if frame is not None:
                result = self._closure(stack[:-1] + (frame,))
        if len(self._steps) > _CACHE:
            self._steps.clear()
        self._steps[key] = result
        return result

    def in_content(self, state: State) -> bool:
        """Whether ``state`` is inside a string or comment, where any run of whole printable
        characters but quotes and backslashes leads to the same kind of state and leaves the
        shortest completion as it is (so such tokens need no check one by one)."""
        key = frozenset(_shape(s) for s in state)
        if key not in self._content:
            length = self.shortest(state)
            probes = [bytes([b]) for b in sorted(PLAIN)] + ["é".encode(), "猫".encode()]
            after = [self.feed(state, p) for p in probes]
            self._content[key] = bool(state) and all(
                frozenset(_shape(s) for s in a) == key and self.shortest(a) == length for a in after)
        return self._content[key]


def _shape(stack: Stack) -> tuple:
    """A stack without the counts of repetitions: the same shape, the same kind of position."""
    return tuple((rule, alt, idx, pending) for rule, alt, idx, _, pending in stack)


DEFAULT_LIMITS = Limits()


@lru_cache(maxsize=8)
def completion(limits: Limits = DEFAULT_LIMITS) -> Completion:
    return Completion(canvas_rules(limits))


# --- limits from a budget ------------------------------------------------------------------------

def longest(limits: Limits) -> int:
    """The longest program of the grammar, in bytes (a character is up to 4)."""
    rules = canvas_rules(limits)

    @cache
    def rule_max(rule: str) -> int:
        return max(sum(item_max(i) for i in alt) for alt in rules[rule])

    def item_max(item: Item) -> int:
        if isinstance(item, Lit):
            return len(item.text.encode("utf-8"))
        if isinstance(item, Chars):
            return 4
        if isinstance(item, Ref):
            return rule_max(item.rule)
        assert item.high is not None, "every repetition is bounded"
        return item.high * item_max(item.item)

    return rule_max("root")


def shortest_program(limits: Limits = DEFAULT_LIMITS) -> int:
    c = completion(limits)
    return c.shortest(c.start()) or 0


def local_limits(max_tokens: int) -> Limits:
    """The grammar's bounds for a model run here (the closing rule keeps the answer within the
    budget): no string, list or comment longer than the budget could hold."""
    base = Limits()
    room = max(0, max_tokens - shortest_program())
    return Limits(string=min(base.string, room), items=min(base.items, room // 13 + 1),
                  regions=min(base.regions, room // 300 + 1), comments=base.comments,
                  comment=min(base.comment, room))


def server_limits(max_tokens: int) -> Limits:
    """Bounds under which every program of the grammar fits ``max_tokens`` tokens, one byte a
    token, for a server that takes only a grammar. The shape grows with the budget (regions and
    detailed descriptions first, as the models write them), then strings get what is left."""
    regions = min(10, max_tokens // 2500)
    items = min(5, 1 + max_tokens // 6000)
    comments = 1 if max_tokens >= 1000 else 0
    shape = Limits(string=0, items=items, regions=regions, comments=comments, comment=min(60, max_tokens // 100))
    if longest(shape) > max_tokens:
        shape = replace(shape, regions=0, items=0, comments=0, comment=0)
    low, high = 0, Limits().string
    while low < high:  # the longest strings that still fit
        mid = (low + high + 1) // 2
        if longest(replace(shape, string=mid)) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return replace(shape, string=low)
