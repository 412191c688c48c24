"""The Canvas grammar: every program it accepts compiles, and what models write is accepted."""

from __future__ import annotations

import random

import pytest

from omostc import check_scene, compile_canvas, decompile, load_spec
from omostc.grammar import canvas_gbnf, sample

from conftest import REPO

xgr = pytest.importorskip("xgrammar", reason="xgrammar is a dev dependency: it reads the GBNF independently")
from xgrammar.testing import _is_grammar_accept_string as accepts  # noqa: E402


@pytest.fixture(scope="module")
def grammar():
    return xgr.Grammar.from_ebnf(canvas_gbnf())


def test_sampled_programs_are_accepted_and_compile(grammar):
    rng = random.Random(0)
    for _ in range(300):
        program = sample(rng)
        assert accepts(grammar, program), program
        check_scene(compile_canvas(program).scene)


def test_what_the_models_write_is_accepted(grammar):
    for answer in ("dragon.md", "dinosaur.md"):
        assert accepts(grammar, (REPO / "specs" / "src" / answer).read_text(encoding="utf-8").strip())
    for spec in sorted((REPO / "specs").glob("*.yaml")):
        scene = load_spec(spec)
        if all(r.box is None and r.name is None for r in scene.regions):  # the grammar is Omost's API
            assert accepts(grammar, decompile(scene, fence=True))
            assert accepts(grammar, decompile(scene))


@pytest.mark.parametrize("change", [
    ("HTML_web_color_name='firebrick'", "HTML_web_color_name=f'{x}'"),
    ("HTML_web_color_name='firebrick'", "HTML_web_color_name='fire brick red'"),
    ("distance_to_viewer=7.0", "distance_to_viewer=0.0"),
    ("distance_to_viewer=7.0", "distance_to_viewer=-7.0"),
    ("location='in the center'", "location='somewhere'"),
    ("canvas = Canvas()", "import os\ncanvas = Canvas()"),
    ("description='A mighty dragon.'", "description='A mighty\\ndragon.'"),
])
def test_what_the_compiler_rejects_or_corrects_the_grammar_rejects(grammar, change):
    answer = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8").strip()
    old, new = change
    assert old in answer
    assert not accepts(grammar, answer.replace(old, new, 1))


def test_cli_prints_the_grammar():
    from click.testing import CliRunner

    from omostc.cli import main

    res = CliRunner().invoke(main, ["grammar"])
    assert res.exit_code == 0 and res.stdout == canvas_gbnf()
    res = CliRunner().invoke(main, ["grammar", "--format", "json-schema"])
    assert res.exit_code == 0 and '"title": "omostc scene spec"' in res.stdout
