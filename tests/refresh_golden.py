"""Rewrite tests/golden/ from specs/: the only way golden files change (`make golden`).

Review the diff before committing it: it is the compiler's output changing.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"


def golden_ir(spec: Path) -> str:
    from omostc import load_spec, lower
    from omostc.ir.clip.tokenize import default_tokenizer
    from omostc.ir.model import to_json

    return to_json(lower(load_spec(spec), default_tokenizer()).to_dict()) + "\n"


def main() -> int:
    from omostc.files import write_text_atomic

    GOLDEN.mkdir(parents=True, exist_ok=True)
    specs = sorted((REPO / "specs").glob("*.yaml"))
    for spec in specs:
        write_text_atomic(GOLDEN / f"{spec.stem}.ir.json", golden_ir(spec))
    stale = {p.name for p in GOLDEN.glob("*.ir.json")} - {f"{s.stem}.ir.json" for s in specs}
    for name in sorted(stale):
        (GOLDEN / name).unlink()
    print(f"wrote {len(specs)} golden IR files; removed {len(stale)} stale ones", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
