"""Bounded caches: the LRU helper, the tokenizers' token-id caches, the SDXL text-encoding cache."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from omostc.ir.clip.tokenize import (
    TOKEN_CACHE_ENTRIES,
    OfflineClipTokenizer,
    TransformersClipTokenizer,
    write_tokenizer_folder,
)
from omostc.lru import LRU


def test_evicts_least_recently_used_first():
    lru = LRU(3)
    for k in "abcd":
        lru.put(k, k.upper())
    assert lru.keys() == ["b", "c", "d"] and "a" not in lru
    assert (lru.size, lru.evictions) == (3, 1)


def test_a_hit_refreshes_recency():
    lru = LRU(3)
    for k in "abc":
        lru.put(k, k)
    assert lru.get("a") == "a"
    lru.put("d", "d")  # "b" is now the least recently used
    assert lru.keys() == ["c", "a", "d"]
    assert "c" in lru and lru.keys()[0] == "c"  # membership does not refresh
    assert lru.get("zz", 0) == 0


def test_sizes_are_summed_and_bound_the_cache():
    lru = LRU(10, size=len)
    lru.put("a", "xxxx")
    lru.put("b", "xxxx")
    assert lru.size == 8 and len(lru) == 2
    lru.put("a", "xx")  # replacing a value re-measures it (and makes it the most recent)
    assert lru.size == 6 and lru.keys() == ["b", "a"]
    lru.put("c", "xxxxxx")  # 12 > 10: "b" goes
    assert lru.keys() == ["a", "c"] and lru.size == 8 and lru.evictions == 1
    lru.put("d", "x" * 11)  # larger than the bound alone: everything goes, itself included
    assert len(lru) == 0 and lru.size == 0 and lru.evictions == 4
    lru.clear()
    with pytest.raises(ValueError, match=">= 0"):
        LRU(-1)


def test_unbounded():
    lru = LRU(None)
    for i in range(1000):
        lru.put(i, i)
    assert len(lru) == 1000 and lru.evictions == 0


def test_get_many_returns_every_key_even_past_the_bound():
    calls = []

    def compute(keys):
        calls.append(keys)
        return [k * 10 for k in keys]

    lru = LRU(2)
    lru.put(1, 10)
    got = lru.get_many([1, 2, 3, 2, 4, 5], compute)
    assert got == {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}
    assert calls == [[2, 3, 4, 5]]  # the missing keys, distinct, in one call
    assert (lru.hits, lru.misses) == (2, 4)  # 1 was cached, the second 2 repeats one computed
    assert lru.keys() == [4, 5] and lru.size == 2
    assert lru.get_many([5], compute) == {5: 50} and len(calls) == 1
    with pytest.raises(ValueError, match="2 values for 1 keys"):
        lru.get_many([9], lambda keys: [1, 2])


# --- tokenizers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_tok(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    folder = tmp_path_factory.mktemp("tok")
    write_tokenizer_folder(folder / "tokenizer")
    return TransformersClipTokenizer.from_pretrained(folder, "tokenizer")


TEXTS = [f"a {colour} hat number {i}" for i, colour in enumerate(["red", "blue", "green", "ochre", "teal"] * 3)]


@pytest.mark.parametrize("kind", ["offline", "transformers"])
def test_tokenizer_cache_is_bounded_and_a_batch_past_it_is_whole(kind, request):
    tok = OfflineClipTokenizer() if kind == "offline" else request.getfixturevalue("transformers_tok")
    assert tok._cache.bound == TOKEN_CACHE_ENTRIES
    expected = [tok.encode([t])[0] for t in TEXTS]
    tok._cache = LRU(4)
    batch = TEXTS + TEXTS[:3]
    assert tok.encode(batch) == expected + expected[:3]  # 15 distinct texts through a 4-entry cache
    assert len(tok._cache) == 4 and tok._cache.keys() == TEXTS[-4:]
    assert tok.encode(TEXTS[:2]) == expected[:2]
    assert tok._cache.keys() == TEXTS[-2:] + TEXTS[:2]


# --- SDXL text encodings ------------------------------------------------------------------------


def test_text_cache_counts_bytes_of_tensor_storage():
    torch = pytest.importorskip("torch", reason="torch is a dev dependency")
    from omostc.backends.sdxl.encode import TEXT_CACHE_BYTES, TextEncoderCache

    assert TextEncoderCache().max_bytes == TEXT_CACHE_BYTES
    sdxl_chunk = (torch.zeros(77, 2048, dtype=torch.float16), torch.zeros(1280, dtype=torch.float16),
                  torch.zeros(1280, dtype=torch.float16))
    cache = TextEncoderCache(max_bytes=2 * 320_512)
    cache.put(((1,), (1,)), sdxl_chunk)
    cache.put(((2,), (2,)), sdxl_chunk[:2] + (None,))  # no projected pooled vector: 2,560 bytes fewer
    assert cache.bytes == 320_512 + 320_512 - 2_560
    cache.put(((3,), (3,)), sdxl_chunk)
    assert ((1,), (1,)) not in cache and cache.evictions == 1 and cache.bytes == 2 * 320_512 - 2_560
    assert TEXT_CACHE_BYTES // 320_512 == 837  # the chunks the default holds, as encode.py says


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    pytest.importorskip("diffusers", reason="diffusers is a dev dependency")
    from omostc.backends.sdxl.models import load_sdxl
    from omostc.backends.sdxl.render import SDXLRegionalBackend

    return SDXLRegionalBackend(load_sdxl(tiny_model_dir, dtype="fp32", device="cpu"))


@pytest.mark.slow
def test_a_tiny_byte_bound_renders_the_same_images(backend):
    from omostc import load_spec, lower
    from omostc.backends.base import RenderOptions
    from omostc.backends.sdxl.encode import TextEncoderCache, encoded_bytes

    options = RenderOptions(width=128, height=128, steps=2)
    irs = [lower(load_spec(REPO / "specs" / f"{name}.yaml"), backend.tokenizer)
           for name in ("dragon", "cat-in-room", "mountain-cabin")]

    def render_all(cache):
        backend.encoder.cache = cache
        out = []
        for ir in irs:
            (image,) = backend.render(ir, options, [3])
            out.append(np.asarray(image))
            assert cache.max_bytes is None or cache.bytes <= cache.max_bytes
            assert cache.bytes == sum(encoded_bytes(cache.get(k)) for k in cache.keys())
        return out

    unbounded = TextEncoderCache(max_bytes=None)
    expected = render_all(unbounded)
    assert unbounded.evictions == 0
    chunk = unbounded.bytes // len(unbounded)
    bounded = TextEncoderCache(max_bytes=2 * chunk)  # fewer chunks than any one of these renders has
    assert min(sum(map(len, backend.encoder.layer_chunks(ir))) + 1 for ir in irs) > 2  # + 1: the negative
    got = render_all(bounded)
    assert bounded.evictions > 0 and len(bounded) <= 2
    assert all(np.array_equal(a, b) for a, b in zip(expected, got))
