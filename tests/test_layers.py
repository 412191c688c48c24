"""The layout shows the architecture: data flows one way through the stage packages, the
compiler and spec never import a model library, no backend is named outside ``backends/``, no
module grows past ~400 lines, and there are no import cycles between packages."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "omostc"
HEAVY = {"torch", "diffusers", "transformers", "accelerate", "safetensors", "ray", "xgrammar", "bitsandbytes"}

# Which omostc packages each stage may import (its own always). Shared modules: diagnostics, files,
# settings, lru (standard library only, or nearly).
SHARED = {"diagnostics", "files", "settings", "lru", "__init__"}
ALLOWED = {
    "compiler": {"spec"},
    "spec": set(),
    "ir": {"spec"},
    "backends": {"spec", "ir", "compiler"},
    "batch": {"spec", "ir", "compiler", "backends", "api"},
    "llm": {"spec", "compiler", "api", "batch"},
    "dev": {"spec", "llm"},
    "serve": {"spec", "compiler", "backends", "batch", "llm", "api"},  # the web app: the public API only
    "cli": {"spec", "ir", "compiler", "backends", "batch", "llm", "dev", "api", "serve"},
    "api": {"spec", "compiler"},
    "data": set(),
    "__main__": {"cli"},  # python -m omostc
}
# ir/ too, at run time (below); statically it may load a model folder's own tokenizer with transformers.
NO_MODEL_LIBRARIES = ("compiler", "spec", "settings", "diagnostics", "files", "lru", "api")
MAX_LINES = 400


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def stage(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem not in SHARED else rel.stem


def omostc_imports(path: Path) -> set[str]:
    """The omostc packages a module imports (anywhere in it, lazily or not)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "omostc" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] == "omostc" and isinstance(node, ast.ImportFrom):
                found.add("__init__")  # from omostc import __version__
    return found


def third_party_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_stage_imports_only_the_stages_before_it(path):
    own = stage(path)
    if own in SHARED:
        allowed = SHARED | {"spec"} if own == "settings" else SHARED  # settings may not know the stages
        assert omostc_imports(path) - allowed - {own} == set() or own == "__init__"
        return
    assert own in ALLOWED, f"{own}: a new stage package must be added to this test's table"
    wrong = omostc_imports(path) - ALLOWED[own] - SHARED - {own}
    assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}, which {own}/ must not"


@pytest.mark.parametrize("path", [p for p in modules() if stage(p) in NO_MODEL_LIBRARIES],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_compiler_spec_and_ir_never_import_a_model_library(path):
    assert not third_party_imports(path) & HEAVY, path


def test_compiling_imports_no_model_library_at_run_time():
    code = ("import sys, omostc, omostc.api, omostc.cli; omostc.compile_file('specs/src/dragon.md'); "
            "omostc.lower(omostc.load_spec('specs/dragon.yaml')); "
            f"print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_backend_is_named_outside_backends():
    from omostc.backends import registry

    names = re.compile(r"\b(" + "|".join(n for n in registry.names() if n != registry.DEFAULT) + r")\b", re.I)
    offenders = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
                 for p in modules() if stage(p) != "backends"
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if names.search(line)]
    assert offenders == []
    # the default backend's name is also the default profile's (and a command draws the layout, `omostc
    # preview`): outside backends/, no code compares with it or picks it by name
    preview = re.compile(r"(==|!=|backend\s*=)\s*[\"']preview[\"']")
    assert [p for p in modules() if stage(p) != "backends" and preview.search(p.read_text(encoding="utf-8"))] == []


def test_modules_stay_small():
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines()) for p in modules()}
    assert {k: n for k, n in sizes.items() if n > MAX_LINES} == {}


def test_no_import_cycles_between_stage_packages():
    graph: dict[str, set[str]] = {}
    for path in modules():
        graph.setdefault(stage(path), set()).update(omostc_imports(path) - {stage(path)} - SHARED)

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(s for s in graph if reaches(s, s, {s}))
    assert cycles == [], f"import cycles through {cycles}"
