"""The offline CLIP tokenizer: with ``clean="reference"`` it gives the original CLIP ids (OpenAI's
cleaning); by default the ids of a model folder's transformers tokenizer (tests/
test_hardening_render.py checks that on the whole corpus). Model folders load through transformers."""

from __future__ import annotations

import pytest
from conftest import corpus_files, needs_shared

from omostc.ir.clip.tokenize import (
    CLIP_VOCAB_SIZE,
    OfflineClipTokenizer,
    TransformersClipTokenizer,
    default_tokenizer,
    find_clip_vocab,
    read_clip_bpe,
    write_tokenizer_folder,
)
from omostc.ir.lowering import lower


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer(clean="reference")


TRICKY = [
    "the", "a", "A fierce battle between warriors and a dragon.", "Tom &amp; Jerry", "mojibake: Ã©",
    "naïve café — “quotes” ’s it's", "I'M LOUD!!!", "emoji 🐉🔥 ok", "tabs\tand\nnewlines  x",
    "123 4.5e6 1,000", "日本語のテキスト", "<|startoftext|> hi <|endoftext|>", "'s 're 've 'd 'll 'm 't",
    "a" * 300, "", "   ", "high-resolution, 8k, ultra-detailed.", "Ünïcödé ÀÉÎÕÜ straße ﬁ",
]


def test_vocabulary_is_clips(tok):
    vocab, merges = read_clip_bpe(find_clip_vocab())
    assert len(vocab) == CLIP_VOCAB_SIZE and len(merges) == 48894
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert tok.encode(["the", "a"]) == [[518], [320]]
    assert (tok.bos_id, tok.eos_id, tok.pad_id, OfflineClipTokenizer(pad="zero").pad_id) == (49406, 49407, 49407, 0)


@pytest.mark.parametrize("text", TRICKY)
def test_ids_equal_the_reference_bpe(clip_reference, tok, text):
    assert tok.encode([text])[0] == clip_reference.encode(text)


@needs_shared
def test_every_corpus_subprompt_matches_the_reference(clip_reference, tok):
    from omostc import CompileError, compile_file

    texts = set()
    for path in corpus_files():
        try:
            ir = lower(compile_file(path).scene, tok)
        except CompileError:
            continue
        for layer in ir.layers:
            texts.update(layer.prefixes + layer.suffixes)
    texts = sorted(texts)
    assert len(texts) > 1500
    assert [tok.encode([t])[0] for t in texts] == [clip_reference.encode(t) for t in texts]


def test_cache_returns_the_same_ids(tok):
    first = tok.encode(["a red hat", "a blue hat", "a red hat"])
    assert first[0] == first[2] and tok.encode(["a red hat"])[0] == first[0]


def test_model_folder_tokenizers_load_through_transformers(tmp_path, tok):
    write_tokenizer_folder(tmp_path / "tokenizer")
    write_tokenizer_folder(tmp_path / "tokenizer_2", pad="zero")
    t1 = TransformersClipTokenizer.from_pretrained(tmp_path, "tokenizer")
    t2 = TransformersClipTokenizer.from_pretrained(tmp_path, subfolder="tokenizer_2")
    assert (t1.bos_id, t1.eos_id, t1.pad_id, t2.pad_id) == (49406, 49407, 49407, 0)
    # transformers' CLIP tokenizer does no ftfy/HTML cleaning: the reference cleaning changes
    # some text; the offline tokenizer's default cleaning is transformers' own, on every text.
    assert t1.encode(TRICKY) == default_tokenizer().encode(TRICKY)
    assert t2.encode(TRICKY) == default_tokenizer(pad="zero").encode(TRICKY)
    plain = [t for t in TRICKY if t not in ("Tom &amp; Jerry", "mojibake: Ã©", "naïve café — “quotes” ’s it's",
                                           "Ünïcödé ÀÉÎÕÜ straße ﬁ")]
    assert t1.encode(plain) == tok.encode(plain)
    assert t1.encode(["Moon’s"]) != tok.encode(["Moon’s"])  # ftfy straightens the apostrophe
    # SDXL's second tokenizer pads with "!", which transformers then also matches as a special
    # token inside text ("!!!" -> three ids instead of one); elsewhere the two agree.
    no_bang = [t for t in plain if "!" not in t]
    assert t2.encode(no_bang) == t1.encode(no_bang)
    padded = t2.tokenizer("a cat", padding="max_length", max_length=77).input_ids
    assert padded[:5] == [49406, 320, 2368, 49407, 0] and len(padded) == 77


def test_missing_model_folder_is_a_clear_error(tmp_path):
    from omostc.ir.clip.tokenize import TokenizerError

    with pytest.raises(TokenizerError, match="cannot load a tokenizer"):
        TransformersClipTokenizer.from_pretrained(tmp_path, "tokenizer")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from omostc.ir.clip.tokenize import clean_text, full_clean_text  # noqa: E402


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
       | st.text(st.sampled_from(list("ab &;'!.,-  \u00e9\u2019\u201c\t\n")), max_size=30))
def test_fast_ascii_cleaning_equals_the_full_cleaning(text):
    assert clean_text(text) == full_clean_text(text)
