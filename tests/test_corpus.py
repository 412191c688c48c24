"""The real-world corpus: every program compiles or fails with a located error, and the
compiled layers equal what Omost's own code computes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import omost_reference as omost
import pytest
from conftest import corpus_files, needs_shared, omost_accepted_corpus

from omostc import CompileError, compile_file, lower
from omostc.compiler.source import extract_program

EXPECTED_FAILURES = {"041.txt", "042.txt", "043.txt", "044.txt"}  # truncated x2, not a canvas x2

pytestmark = needs_shared


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_corpus_program_compiles_or_fails_located(path):
    try:
        result = compile_file(path)
    except CompileError as exc:
        assert path.name in EXPECTED_FAILURES, exc
        assert exc.errors
        for err in exc.errors:
            assert err.file == str(path) and err.line is not None and err.source_line is not None
        return
    assert path.name not in EXPECTED_FAILURES
    assert result.scene.global_description.description


def test_at_least_41_of_45_compile():
    compiled = 0
    for path in corpus_files():
        try:
            compile_file(path)
            compiled += 1
        except CompileError:
            pass
    assert len(corpus_files()) == 45
    assert compiled >= 41


def test_cli_failures_exit_1_without_traceback(tmp_path):
    failing = [str(p) for p in corpus_files() if p.name in EXPECTED_FAILURES]
    proc = subprocess.run([sys.executable, "-m", "omostc.cli", "compile", "-O", str(tmp_path), *failing],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    for name in EXPECTED_FAILURES:
        assert re.search(rf"{re.escape(name)}:\d+:\d+: error: ", proc.stderr), name
    assert "truncated" in proc.stderr
    assert not list(tmp_path.iterdir())


def _omost_layers(path):
    """Layers as Omost computes them, or None where Omost's code rejects the program."""
    code = extract_program(path.read_text(encoding="utf-8")).code
    try:
        canvas = omost.run_program(code)
    except Exception:
        return None
    return canvas.process()["bag_of_conditions"]


@pytest.mark.parametrize("path", omost_accepted_corpus(), ids=lambda p: p.name)
def test_layers_equal_omost(path):
    expected = _omost_layers(path)
    ir = lower(compile_file(path).scene)
    got = [(list(l.box), list(l.color), l.prefixes, l.suffixes) for l in ir.layers]
    want = [(c["rect"], c["color"], c["prefixes"], c["suffixes"]) for c in expected]
    assert got == want


def test_omost_accepts_most_of_the_corpus():
    accepted = omost_accepted_corpus()
    strict = []
    for p in corpus_files():
        try:
            omost.from_bot_response(p.read_text(encoding="utf-8"))
            strict.append(p)
        except Exception:
            pass
    assert len(accepted) >= 40 and len(strict) >= 13


BBOX = re.compile(r"bbox=\[(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\]")


@pytest.mark.parametrize("path", [p for p in corpus_files() if "bbox=" in p.read_text(encoding="utf-8")],
                         ids=lambda p: p.name)
def test_bbox_boxes_are_what_their_numbers_say(path):
    code = extract_program(path.read_text(encoding="utf-8")).code
    live = [m for m in BBOX.finditer(code) if not code[: m.start()].rsplit("\n", 1)[-1].lstrip().startswith("#")]
    scene = compile_file(path).scene
    boxed = [r for r in scene.regions if r.box is not None]
    assert len(boxed) == len(live) > 0
    ir = lower(scene)
    by_index = {l.region_index: l for l in ir.region_layers}
    regions = [i for i, r in enumerate(scene.regions) if r.box is not None]
    for i, m in zip(regions, live):
        x, y, w, h = map(int, m.groups())
        assert by_index[i].box == (y, min(y + h, 90), x, min(x + w, 90))


@pytest.mark.parametrize("path",
                         [p for p in corpus_files() if re.search(r"(?<!\w)name=", p.read_text(encoding="utf-8"))],
                         ids=lambda p: p.name)
def test_region_names_are_kept(path):
    code = extract_program(path.read_text(encoding="utf-8")).code
    tree = ast.parse(code)
    names = [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
             for kw in node.keywords if kw.arg == "name"]
    assert [r.name for r in compile_file(path).scene.regions] == names
