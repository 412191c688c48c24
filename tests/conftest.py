import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OMOSTC_SHARED", REPO.parent / "shared"))
CORPUS = SHARED / "corpus"
TRANSCRIPT = SHARED / "reference" / "transcript"


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("[0-9][0-9][0-9].txt")) if CORPUS.is_dir() else []


needs_shared = pytest.mark.skipif(
    not CORPUS.is_dir(),
    reason=f"the shared corpus is not here ({CORPUS}); it exists on the developers' machines and in CI",
)


@pytest.fixture
def repo() -> Path:
    return REPO
