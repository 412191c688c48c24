"""A small least-recently-used cache with a bound on the total size of its values.

Used by the tokenizers (``ir/clip``, bounded by entry count) and the backends' text-encoding
caches (bounded by bytes of tensor storage); standard library only, so that
``ir/`` does not depend on ``backends/``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """Values by key; once the sizes of the values sum past ``bound``, the least recently used go.

    ``size(value)`` measures a value (1 when not given: the bound is then an entry count); it is
    called once, when the value is stored. ``bound=None`` never evicts. A value larger than the
    bound on its own is evicted as soon as it is stored: the cache never holds more than its
    bound. ``get`` and ``get_many`` refresh recency; ``in`` does not.
    """

    def __init__(self, bound: int | None, size: Callable[[V], int] | None = None):
        if bound is not None and bound < 0:
            raise ValueError(f"an LRU bound must be >= 0 or None, not {bound}")
        self.bound = bound
        self._measure = size
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.size = 0  # sum of the stored values' sizes
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def keys(self) -> list[K]:
        """Keys from least to most recently used."""
        return list(self._data)

    def get(self, key: K, default: V | None = None) -> V | None:
        item = self._data.get(key)
        if item is None:
            return default
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self.size -= old[1]
        n = self._measure(value) if self._measure else 1
        self._data[key] = (value, n)
        self.size += n
        while self.bound is not None and self.size > self.bound:
            _, (_, gone) = self._data.popitem(last=False)
            self.size -= gone
            self.evictions += 1

    def get_many(self, keys: Iterable[K], compute: Callable[[list[K]], Iterable[V]]) -> dict[K, V]:
        """Every key's value: the cached ones, and the others from one call of ``compute`` (with
        the missing keys, distinct, in order of first appearance), which are then stored.

        The returned dict holds every requested key even where storing the new values evicted
        others of this call (or themselves), so a request larger than the bound still gets all
        its values. Counts a hit for each key found, in the cache or earlier in ``keys``, and a
        miss for each distinct key computed."""
        found: dict[K, V] = {}
        missing: dict[K, None] = {}
        for key in keys:
            if key in found or key in missing:
                self.hits += 1
            elif key in self._data:
                self._data.move_to_end(key)
                found[key] = self._data[key][0]
                self.hits += 1
            else:
                missing[key] = None
        if missing:
            self.misses += len(missing)
            values = list(compute(list(missing)))
            if len(values) != len(missing):
                raise ValueError(f"compute gave {len(values)} values for {len(missing)} keys")
            for key, value in zip(missing, values):
                found[key] = value
                self.put(key, value)
        return found

    def clear(self) -> None:
        self._data.clear()
        self.size = 0
