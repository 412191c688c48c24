"""CLIP tokenisation with real BPE token counts.

Two sources of a tokenizer, one interface (``ClipTokenizer``):

* a model's own ``tokenizer/`` and ``tokenizer_2/`` folders, loaded with transformers
  (``from_pretrained``), as the renderer uses them;
* without a model (compile-only use, CI, the preview backend), the CLIP BPE built offline from
  the vocabulary file that the ``openai-clip`` package ships (``bpe_simple_vocab_16e6.txt.gz``),
  with the ``tokenizers`` library: the same 49,408-entry vocabulary and merges and the same
  pre-token split as OpenAI's reference tokenizer.

The offline tokenizer cleans text as the renderer's tokenizer does (``clean="model"``, the
default): transformers' ``CLIPTokenizer`` (tokenizers-backed; ``CLIPTokenizerFast`` in
transformers 4) normalises with NFC, whitespace runs folded to one space, and lower case, and
nothing else: no ftfy, no HTML unescaping. So its bags are the ones the renderer makes
(a curly apostrophe, "Moon’s", is 4 tokens there and 3 after ftfy straightens it). OpenAI's
reference cleaning (ftfy, HTML unescaping twice, whitespace folded, lower case) is
``clean="reference"``.

Token ids of every distinct text are cached per tokenizer, so a batch tokenises each
sub-prompt once. The cache is least-recently-used, bounded at ``TOKEN_CACHE_ENTRIES`` texts.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from omostc.diagnostics import OmostcError
from omostc.lru import LRU

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CLIP_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SIZE = 49408
CLIP_MERGES = 49152 - 256 - 2  # merges the original tokenizer reads from the file
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
CONTEXT = 77  # tokens per chunk, BOS and EOS included
ZERO_PAD = "!"  # OpenCLIP ViT-bigG's pad token (id 0), of a model folder's tokenizer_2
CLEANINGS = ("model", "reference")
BUDGET = CONTEXT - 2  # text tokens per chunk

# Texts whose token ids a tokenizer keeps (least recently used go first). A scene has some tens
# of distinct sub-prompts, so this holds about a thousand scenes' worth; an entry (the text and
# its ids as Python objects) takes about 1 KB, so a full cache holds about 64 MB.
TOKEN_CACHE_ENTRIES = 65_536

# OpenAI CLIP's pre-token pattern (case-insensitive in the original; text is lower-cased first).
_PRETOKEN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


class TokenizerError(OmostcError):
    pass


class ClipTokenizer(Protocol):
    """What lowering needs of a CLIP tokenizer (read-only: a field or a property will do)."""

    @property
    def name(self) -> str: ...

    @property
    def bos_id(self) -> int: ...

    @property
    def eos_id(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without BOS/EOS and without truncation."""
        ...


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table that CLIP's BPE runs on."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def find_clip_vocab() -> Path:
    """The CLIP BPE file: $OMOSTC_CLIP_VOCAB, else the copy inside the openai-clip package."""
    env = os.environ.get("OMOSTC_CLIP_VOCAB")
    if env:
        path = Path(env)
        if not path.is_file():
            raise TokenizerError(f"OMOSTC_CLIP_VOCAB points at {path}, which is not a file")
        return path
    spec = importlib.util.find_spec("clip")  # locates the package without importing it (it needs torch)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / CLIP_VOCAB_FILE
        if path.is_file():
            return path
    raise TokenizerError(
        f"the CLIP BPE vocabulary ({CLIP_VOCAB_FILE}) was not found: install the 'openai-clip' package, "
        "set OMOSTC_CLIP_VOCAB to the file, or give a model folder with its own tokenizer"
    )


def read_clip_bpe(path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocabulary and merges exactly as the original CLIP tokenizer builds them."""
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    merges: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:CLIP_MERGES + 1], start=2):
        pair = line.split()
        if len(pair) != 2:
            raise TokenizerError(f"{path} does not hold the CLIP merges (line {number}: {line[:40]!r})")
        merges.append((pair[0], pair[1]))
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    if len(vocab_list) != CLIP_VOCAB_SIZE:
        raise TokenizerError(f"{path} does not hold the CLIP vocabulary ({len(vocab_list)} entries)")
    return {token: i for i, token in enumerate(vocab_list)}, merges


def clean_text(text: str) -> str:
    """The original CLIP cleaning: ftfy, HTML unescaping twice, whitespace folded, lower case."""
    if text.isascii() and text.isprintable() and "&" not in text:
        return " ".join(text.split()).lower()  # what the full cleaning gives such text, 20x faster
    return full_clean_text(text)


def full_clean_text(text: str) -> str:
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


@lru_cache(maxsize=8)
def _offline_backend(path: str, clean: str = "reference", pad: str = "eos"):
    """The BPE pipeline. ``clean="model"`` is exactly transformers' ``CLIPTokenizer`` as loaded
    from a diffusers ``tokenizer/`` folder (``write_tokenizer_folder``): its normalizer, its
    pre-tokenizer, and its special tokens (with ``pad="zero"``, ``!`` is one of them, as in
    a model folder's ``tokenizer_2``). ``clean="reference"`` expects text already cleaned by ``clean_text``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab, merges = read_clip_bpe(Path(path))
    bpe = models.BPE(vocab=vocab, merges=merges, unk_token=EOS, end_of_word_suffix="</w>",
                     continuing_subword_prefix="", fuse_unk=False)
    tok = Tokenizer(bpe)
    model = clean == "model"
    if model:
        tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                               normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_PRETOKEN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=model),
    ])
    tok.decoder = decoders.ByteLevel()
    # As in the reference, the two marker strings in a text are the special tokens themselves.
    special = [BOS, EOS] + ([ZERO_PAD] if model and pad == "zero" else [])
    tok.add_special_tokens([AddedToken(t, normalized=False) for t in special])
    return tok


@dataclass
class OfflineClipTokenizer:
    """The CLIP tokenizer, built from its BPE file without any model download.

    ``pad`` is the padding convention: ``"eos"`` as Stable Diffusion's CLIP ViT-L tokenizer,
    ``"zero"`` (id 0, ``!``) as the OpenCLIP ViT-bigG one beside it. ``clean``: ``"model"``
    (the default) gives the ids of transformers' tokenizer of a model folder, what the renderer
    uses (with ``pad="zero"``, of a model folder's ``tokenizer_2``, which reads ``!`` as its pad token);
    ``"reference"`` the ids of OpenAI's reference tokenizer (ftfy and HTML cleaning).
    """

    pad: str = "eos"
    vocab_path: Path | None = None
    name: str = "clip-bpe"
    clean: str = "model"
    bos_id: int = CLIP_VOCAB_SIZE - 2
    eos_id: int = CLIP_VOCAB_SIZE - 1
    _cache: LRU[str, list[int]] = field(default_factory=lambda: LRU(TOKEN_CACHE_ENTRIES), repr=False, compare=False)

    def __post_init__(self):
        if self.pad not in ("eos", "zero"):
            raise TokenizerError(f"pad must be 'eos' or 'zero', not {self.pad!r}")
        if self.clean not in CLEANINGS:
            raise TokenizerError(f"clean must be one of {', '.join(CLEANINGS)}, not {self.clean!r}")
        self.vocab_path = Path(self.vocab_path) if self.vocab_path else find_clip_vocab()
        self._backend = _offline_backend(str(self.vocab_path), self.clean, self.pad)

    @property
    def pad_id(self) -> int:
        return self.eos_id if self.pad == "eos" else 0

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self._cache.get_many(texts, self._encode_batch)
        return [ids[t] for t in texts]

    def _encode_batch(self, texts: list[str]) -> list[list[int]]:
        cleaned = texts if self.clean == "model" else [clean_text(t) for t in texts]
        encodings = self._backend.encode_batch(cleaned, add_special_tokens=False)
        return [enc.ids for enc in encodings]


@dataclass
class TransformersClipTokenizer:
    """A model's own tokenizer folder, loaded with transformers' ``from_pretrained``."""

    tokenizer: PreTrainedTokenizerBase
    name: str = "transformers"
    _cache: LRU[str, list[int]] = field(default_factory=lambda: LRU(TOKEN_CACHE_ENTRIES), repr=False, compare=False)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, subfolder: str = "tokenizer", **kwargs
    ) -> TransformersClipTokenizer:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(path), subfolder=subfolder, **kwargs)
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot load a tokenizer from {path}/{subfolder}: {exc}") from None
        return cls(tokenizer=tok, name=f"{path}/{subfolder}")

    @property
    def bos_id(self) -> int:
        return self.tokenizer.bos_token_id

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self._cache.get_many(texts, self._encode_batch)
        return [ids[t] for t in texts]

    def _encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=False, add_special_tokens=False).input_ids


@lru_cache(maxsize=4)
def default_tokenizer(pad: str = "eos", clean: str = "model") -> OfflineClipTokenizer:
    """The offline CLIP tokenizer (by default counting as a model's transformers tokenizer does),
    built once per process."""
    return OfflineClipTokenizer(pad=pad, clean=clean)


def write_tokenizer_folder(folder: str | os.PathLike, *, pad: str = "eos", vocab_path: Path | None = None) -> Path:
    """Save the CLIP tokenizer in the Hugging Face layout of a diffusers ``tokenizer/`` folder.

    ``pad="eos"`` matches the CLIP ViT-L ``tokenizer/``, ``pad="zero"`` the OpenCLIP ``tokenizer_2/`` (pad ``!``).
    """
    import json

    vocab, merges = read_clip_bpe(Path(vocab_path) if vocab_path else find_clip_vocab())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": CONTEXT,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS if pad == "eos" else ZERO_PAD,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}, indent=2), encoding="utf-8")
    return folder
