"""The Canvas grammar: every program it accepts compiles, and what models write is accepted."""

from __future__ import annotations

import random

import pytest
from conftest import REPO

from omostc import check_scene, compile_canvas, decompile, load_spec
from omostc.compiler.grammar import canvas_gbnf, sample

xgr = pytest.importorskip("xgrammar", reason="xgrammar is a dev dependency: it reads the GBNF independently")
from xgrammar.testing import _is_grammar_accept_string as accepts  # noqa: E402


@pytest.fixture(scope="module")
def grammar():
    return xgr.Grammar.from_ebnf(canvas_gbnf())


@pytest.mark.slow
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


# --- constrained generation ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    from omostc.dev.tiny_llama import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-grammar"), seed=0)


@pytest.mark.slow
def test_tiny_llama_under_the_grammar_always_writes_a_valid_scene(tiny_llama):
    from omostc import CompileError
    from omostc.compiler.grammar import Limits
    from omostc.llm import SamplingOptions, TransformersChatBackend, new_conversation

    limits = Limits(string=10, items=2, regions=2, comments=1, comment=10)  # every answer ends in ~1,000 tokens
    sampling = SamplingOptions(temperature=1.0, top_p=1.0, max_tokens=1500, seed=0)
    messages = new_conversation("a cat on a table")

    def compiled(answers):
        count = 0
        for answer in answers:
            try:
                check_scene(compile_canvas(answer).scene)
                count += 1
            except CompileError:
                pass
        return count

    constrained = TransformersChatBackend(str(tiny_llama), device_map="cpu", dtype="fp32", constrain=True,
                                          limits=limits)
    assert compiled(constrained.sample_answers(messages, 100, sampling)) == 100
    free = TransformersChatBackend(str(tiny_llama), device_map="cpu", dtype="fp32")
    assert compiled(free.sample_answers(messages, 20, SamplingOptions(1.0, 1.0, 300, 0))) == 0


@pytest.mark.parametrize("mode, field", [("llama.cpp", ["grammar"]), ("vllm", ["structured_outputs", "grammar"]),
                                         ("vllm-legacy", ["guided_grammar"])])
def test_servers_receive_the_grammar(mode, field, tmp_path):
    from click.testing import CliRunner
    from test_llm import CLEAN, ChatServer

    from omostc.cli import main
    from omostc.compiler.budget import server_limits

    server = ChatServer([CLEAN])
    try:
        res = CliRunner().invoke(main, ["generate", "a dragon", "--base-url", server.url, "--model", "qwen2.5-7b",
                                        "--grammar", mode, "-q", "-o", str(tmp_path / "s.yaml")])
    finally:
        server.close()
    assert res.exit_code == 0, res.output
    sent = server.requests[0]["body"]
    for key in field:
        sent = sent[key]
    assert sent == canvas_gbnf(server_limits(4096))  # bounded so that any program fits --max-tokens
    assert load_spec(tmp_path / "s.yaml").regions
