"""Lowering cost per canvas (tokenise + bags + masks at 128 x 128) and tokenizer construction.

Prints, from one run: the tokenizer build time; lowering per canvas with a cold tokenizer cache
(every sub-prompt tokenised) and a warm one (a batch where sub-prompts repeat, e.g. re-renders);
and the share of a cold lowering spent tokenising.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from omostc import CompileError, compile_file  # noqa: E402
from omostc.ir.clip.tokenize import OfflineClipTokenizer, _offline_backend, clean_text  # noqa: E402
from omostc.ir.lowering import lower  # noqa: E402


def scenes():
    corpus = REPO.parent / "shared" / "corpus"
    files = sorted(corpus.glob("[0-9][0-9][0-9].txt")) or sorted((REPO / "specs" / "src").iterdir())
    out = []
    for f in files:
        try:
            out.append(compile_file(f).scene)
        except CompileError:
            pass
    return out


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    items = scenes()

    def build():
        _offline_backend.cache_clear()
        OfflineClipTokenizer()

    build_s = timed(build, repeat)
    warm = OfflineClipTokenizer()

    def lower_all(tokenizer_factory):
        for scene in items:
            lower(scene, tokenizer_factory()).masks(128, 128)

    cold_s = timed(lambda: lower_all(OfflineClipTokenizer), repeat) / len(items)
    lower_all(lambda: warm)
    warm_s = timed(lambda: lower_all(lambda: warm), repeat) / len(items)
    texts = sorted({t for s in items for layer in lower(s, warm).layers for t in (*layer.prefixes, *layer.suffixes)})
    backend = _offline_backend(str(warm.vocab_path))
    tokenise_s = timed(lambda: backend.encode_batch([clean_text(t) for t in texts], add_special_tokens=False), repeat)
    print(f"lowering benchmark: {len(items)} canvases, {len(texts)} distinct sub-prompts, best of {repeat}")
    print(f"  offline CLIP tokenizer construction        {build_s * 1e3:8.1f} ms (once per process)")
    print(f"  lower + masks 128x128, cold token cache    {cold_s * 1e3:8.3f} ms/canvas")
    print(f"  lower + masks 128x128, warm token cache    {warm_s * 1e3:8.3f} ms/canvas")
    print(f"  tokenising every distinct sub-prompt once  {tokenise_s / len(items) * 1e3:8.3f} ms/canvas "
          f"({tokenise_s / len(items) / cold_s:.0%} of a cold lowering)")
    print(f"  warm / cold                                {warm_s / cold_s:8.2f}x")


if __name__ == "__main__":
    main()
