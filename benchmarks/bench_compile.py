"""Compile throughput: omostc (ast, no exec) vs Omost's exec-based loading, same run, same inputs.

Prints per-canvas times and their ratio. Not a test: timings are for reading, not asserting.
"""

from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import omost_reference as omost  # noqa: E402  (the exec baseline, written from OMOST.md)

from omostc import check_scene, compile_canvas, dumps_spec  # noqa: E402
from omostc.files import write_text_atomic  # noqa: E402

FENCE = re.compile(r"```python\n(.*?)\n```", re.DOTALL)


def inputs() -> list[tuple[str, str]]:
    corpus = REPO.parent / "shared" / "corpus"
    files = sorted(corpus.glob("[0-9][0-9][0-9].txt")) or sorted((REPO / "specs" / "src").iterdir())
    return [(f.name, f.read_text(encoding="utf-8")) for f in files]


def omost_load(text: str):
    """Omost's path: take the python fence (or the text), exec it against Canvas, process()."""
    m = FENCE.search(text)
    code = m.group(1) if m else text
    return omost.run_program(code).process()


def omostc_load(text: str):
    """omostc's path to an in-memory, schema-validated spec."""
    scene = compile_canvas(text).scene
    check_scene(scene)
    return scene


def omostc_to_file(text: str, path: Path):
    write_text_atomic(path, dumps_spec(compile_canvas(text).scene))


def best_per_item(fn, items, rounds: int) -> float:
    """Best-of-rounds mean seconds per item over the whole set (robust to a noisy machine)."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        times.append((time.perf_counter() - t0) / len(items))
    return min(times)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    usable = []
    for _, text in inputs():
        try:
            omost_load(text)
            omostc_load(text)
        except Exception:  # a program either side rejects is not comparable
            continue
        usable.append(text)
    texts = usable
    # Interleave the two so machine noise hits both alike.
    omostc_t, omost_t = [], []
    for _ in range(3):
        omostc_t.append(best_per_item(omostc_load, texts, rounds))
        omost_t.append(best_per_item(omost_load, texts, rounds))
    ours, theirs = min(omostc_t), min(omost_t)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "scene.yaml"
        to_file = best_per_item(lambda t: omostc_to_file(t, target), texts, max(rounds // 4, 3))
    print(f"compile benchmark: {len(texts)} canvases both accept, best of {rounds} rounds x 3")
    print(f"  omostc parse + validate (in-memory spec)   {ours * 1e3:8.3f} ms/canvas")
    print(f"  Omost exec + process() (baseline)          {theirs * 1e3:8.3f} ms/canvas")
    print(f"  ratio omostc / Omost                       {ours / theirs:8.2f}x  (goal <= 1.0x)")
    print(f"  omostc full compile to YAML file           {to_file * 1e3:8.3f} ms/canvas")
    print(f"  spread of omostc rounds                    {statistics.pstdev(omostc_t) * 1e3:8.3f} ms")


if __name__ == "__main__":
    main()
