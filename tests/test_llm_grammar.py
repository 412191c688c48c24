"""Issue 14: every constrained answer compiles through the command users run (the grammar closes
the program within --max-tokens), the grammar reaches each kind of server in the field it reads,
servers are asked what they are and how long their context is, and --partial."""

from __future__ import annotations

import csv
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from conftest import CORPUS, REPO, SHARED, dev_model, needs_shared

from omostc import compile_canvas, load_spec
from omostc.cli import main
from omostc.compiler.budget import MIN_MAX_TOKENS, completion, local_limits, longest, server_limits
from omostc.compiler.grammar import MAX_REPETITION, Limits, canvas_gbnf
from omostc.llm.conversation import worked_example

xgr = pytest.importorskip("xgrammar", reason="xgrammar is a dev dependency: it reads the GBNF independently")
from xgrammar.testing import _is_grammar_accept_string as accepts  # noqa: E402  (after the skip)

CLEAN = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8")
TRUNCATED = CLEAN[: CLEAN.index("# Add a mighty dragon.") + 200]
SHORT = """```python
canvas = Canvas()
canvas.set_global_description(
    description='A red barn.',
    detailed_descriptions=[
        'A barn in a field.',
    ],
    tags='barn, field',
    HTML_web_color_name='firebrick',
)
canvas.add_local_description(
    location='in the center',
    offset='no offset',
    area='a large square area',
    distance_to_viewer=5.0,
    description='The barn.',
    detailed_descriptions=[
        'Red walls.',
    ],
    tags='barn',
    atmosphere='Quiet.',
    style='Photo.',
    quality_meta='Sharp.',
    HTML_web_color_name='firebrick',
)
```"""
BUDGETS = [MIN_MAX_TOKENS, 256, 300, 512, 1000, 2048, 4096, 8192, 16384, 32768]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- the grammar: bounds, real answers ----------------------------------------------------------

@pytest.mark.parametrize("limits", [Limits(), *map(local_limits, BUDGETS), *map(server_limits, BUDGETS)],
                         ids=str)
def test_every_repetition_bound_is_under_llama_cpps_threshold(limits):
    bounds = [int(b) for b in re.findall(r"\{\d+,(\d+)\}", canvas_gbnf(limits))]
    assert bounds and max(bounds) < 2000  # llama.cpp: MAX_REPETITION_THRESHOLD = 2000, refused at 2,000
    with pytest.raises(ValueError, match="1999"):
        Limits(string=MAX_REPETITION + 1)


def _program(text: str) -> str:
    """The program as the model wrote it: its fenced block, else the text (no researcher's import)."""
    fenced = re.search(r"```python\n.*?```", text, re.S)
    return (fenced.group(0) if fenced else "\n".join(
        line for line in text.strip().splitlines() if not line.startswith("from lib_omost"))).strip()


def _real_answers():
    """The corpus programs as models wrote them (clean or JSON-escaped; the researchers' import
    line taken off), the transcript's answers, and the repository's."""
    out = []
    if CORPUS.is_dir():
        kinds = {r["file"]: r["kind"] for r in csv.DictReader((CORPUS / "INDEX.tsv").open(), delimiter="\t")}
        for name, kind in sorted(kinds.items()):
            if kind in ("clean", "json-escaped"):
                out.append((name, _program((CORPUS / name).read_text(encoding="utf-8"))))
        for path in sorted((SHARED / "reference" / "transcript").glob("*assistant*")):
            out.append((path.name, _program(path.read_text(encoding="utf-8"))))
    for path in sorted((REPO / "specs" / "src").glob("*.md")):
        out.append((path.name, _program(path.read_text(encoding="utf-8"))))
    return out


@needs_shared
def test_the_grammar_accepts_every_real_answer_and_each_can_be_followed_to_its_end():
    grammar = xgr.Grammar.from_ebnf(canvas_gbnf())
    walker = completion()
    answers = _real_answers()
    assert len(answers) >= 20
    for name, answer in answers:
        compile_canvas(answer)
        assert accepts(grammar, answer), name
        assert walker.shortest(walker.feed(walker.start(), answer.encode())) == 0, name


def test_the_shortest_completion_follows_the_text():
    walker = completion()
    start = walker.start()
    assert walker.shortest(start) <= MIN_MAX_TOKENS - 10
    head = "canvas = Canvas()\ncanvas.set_global_description(\n    description='A cat"
    state = walker.feed(start, head.encode())
    rest = "',\n    detailed_descriptions=[\n    ],\n    tags='',\n    HTML_web_color_name='red',\n)"
    assert walker.shortest(state) == len(rest)
    assert walker.shortest(walker.feed(state, (rest).encode())) == 0
    assert walker.shortest(walker.feed(state, b"\n")) is None  # no line ends inside a string


@pytest.mark.parametrize("budget", BUDGETS)
def test_server_grammars_fit_every_program_in_the_budget(budget):
    assert longest(server_limits(budget)) <= budget


# --- every answer compiles through `omostc generate` ------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    return dev_model(tmp_path_factory, "tiny-llama")


def _compiles(tiny_llama, budget, seed, tmp_path):
    out = tmp_path / f"s{budget}-{seed}.yaml"
    res = run("generate", "a cat on a table", "--model", tiny_llama, "--max-tokens", budget, "--seed", seed, "-q",
              "-o", out)
    assert res.exit_code == 0, (budget, seed, res.stderr[-2000:])
    assert load_spec(out).global_description is not None


@pytest.mark.parametrize("budget, seed", [(MIN_MAX_TOKENS, 0), (256, 1)])
def test_constrained_answers_of_the_random_model_compile_within_the_budget(tiny_llama, tmp_path, budget, seed):
    _compiles(tiny_llama, budget, seed, tmp_path)  # before: 1 of 100 seeds compiled at 256


@pytest.mark.slow
@pytest.mark.parametrize("budget, seeds", [(256, 10), (512, 10), (4096, 2)])  # all 100: benchmarks/
def test_constrained_answers_compile_over_many_seeds(tiny_llama, tmp_path, budget, seeds):
    for seed in range(100, 100 + seeds):
        _compiles(tiny_llama, budget, seed, tmp_path)


def test_too_few_tokens_for_a_constrained_answer_is_a_clear_error(tiny_llama):
    res = run("generate", "a cat", "--model", tiny_llama, "--max-tokens", MIN_MAX_TOKENS - 1, "-q")
    assert res.exit_code == 1 and f"at least {MIN_MAX_TOKENS}" in res.stderr and "Traceback" not in res.output


# --- loopback servers ---------------------------------------------------------------------------

class Server:
    """Answers GETs from ``gets`` (path -> JSON; others 404) and each POST with ``answer``,
    streamed, after ``check(body)`` (the field the real server reads)."""

    def __init__(self, answer=SHORT, gets=None, check=None):
        self.requests, self.gets = [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.gets.append(self.path)
                if self.path not in (gets or {}):
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(gets[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                problem = check(body) if check else None
                if problem:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(json.dumps({"error": {"message": problem}}).encode())
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(answer), 40):
                    chunk = {"choices": [{"index": 0, "delta": {"content": answer[i:i + 40]}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(**kw):
        servers.append(Server(**kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _gbnf_at(*path):
    """A check that the grammar is at ``path`` in the body, parses, and admits the answer sent."""
    def check(body):
        value = body
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return f"no {'.'.join(path)} in the request"
            value = value[key]
        if not accepts(xgr.Grammar.from_ebnf(value), SHORT):
            return "the grammar does not admit the answer"
        return None
    return check


def _schema(body):
    fmt = body.get("response_format") or {}
    return None if fmt.get("type") == "json_schema" and fmt["json_schema"]["schema"] else "no response_format"


FIELDS = {"llama.cpp": ("grammar",), "vllm": ("structured_outputs", "grammar"), "vllm-legacy": ("guided_grammar",),
          "sglang": ("ebnf",), "tabbyapi": ("grammar_string",)}


@pytest.mark.parametrize("mode", [*FIELDS, "json-schema"])
@pytest.mark.parametrize("model", ["qwen2.5-7b-instruct", "omost-llama-3-8b"])
def test_an_explicit_grammar_is_always_sent_in_the_servers_field(serve, tmp_path, mode, model):
    answer = SHORT
    if mode == "json-schema":
        import yaml

        answer = json.dumps(yaml.safe_load((REPO / "specs" / "dragon.yaml").read_text(encoding="utf-8")))
    server = serve(answer=answer, check=_gbnf_at(*FIELDS[mode]) if mode in FIELDS else _schema)
    res = run("generate", "a barn", "--base-url", server.url, "--model", model, "--grammar", mode,
              "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "constraint: on" in res.stderr  # before: an Omost-named model was sent nothing
    field = FIELDS[mode][0] if mode in FIELDS else "response_format"
    assert f"`{field}`" in res.stderr
    others = {f[0] for f in FIELDS.values()} - {field}
    assert not others & set(server.requests[0])
    assert load_spec(tmp_path / "s.yaml").global_description.description


@pytest.mark.parametrize("gets, field", [
    ({"/props": {"default_generation_settings": {"n_ctx": 8192}}}, ("grammar",)),
    ({"/version": {"version": "0.11.2"}}, ("guided_grammar",)),
    ({"/version": {"version": "0.12.0"}}, ("structured_outputs", "grammar")),
    ({"/get_model_info": {"model_path": "Qwen/Qwen2.5-7B-Instruct", "is_generation": True}}, ("ebnf",)),
])
@pytest.mark.parametrize("flags", [["--constrain"], []])
def test_without_grammar_the_server_is_asked_what_it_is(serve, gets, field, flags):
    server = serve(gets=gets, check=_gbnf_at(*field))
    res = run("generate", "a barn", "--base-url", server.url, "--model", "qwen2.5-7b", *flags)
    assert res.exit_code == 0, res.output
    assert f"constraint: on (the Canvas grammar as `{field[0]}`" in res.stderr
    from omostc.compiler.budget import server_limits

    bound = server_limits(4096)  # the default --max-tokens: the line says what the bound allows
    assert f"at most {bound.regions} regions, {bound.items} detailed descriptions each, strings of {bound.string} " \
        "characters" in res.stderr


def test_constrain_on_a_server_that_says_nothing_asks_for_grammar(serve):
    server = serve()
    res = run("generate", "a barn", "--base-url", server.url, "--model", "gpt-4o", "--constrain")
    assert res.exit_code == 1 and "--grammar" in res.stderr and not server.requests
    # the default constraint of a generic model is not dropped silently either: it says so
    res = run("generate", "a barn", "--base-url", server.url, "--model", "gpt-4o", "-q")
    assert res.exit_code == 0 and "constraint: off" in res.stderr and "--grammar" in res.stderr
    assert not {"grammar", "guided_grammar", "structured_outputs", "response_format"} & set(server.requests[0])
    res = run("generate", "a barn", "--base-url", server.url, "--grammar", "llama.cpp", "--no-constrain")
    assert res.exit_code == 1 and "contradicts" in res.stderr


def test_the_server_grammar_is_bounded_by_the_budget(serve):
    server = serve(check=_gbnf_at("grammar"))
    res = run("generate", "a barn", "--base-url", server.url, "--model", "qwen", "--grammar", "llama.cpp",
              "--max-tokens", 4096, "-q")
    assert res.exit_code == 0, res.output
    assert server.requests[0]["grammar"] == canvas_gbnf(server_limits(4096))
    res = run("generate", "a barn", "--base-url", server.url, "--model", "qwen", "--grammar", "llama.cpp",
              "--max-tokens", 100, "-q")
    assert res.exit_code == 1 and f"at least {MIN_MAX_TOKENS}" in res.stderr


# --- the model's context ----------------------------------------------------------------------

def _generic_spec(tmp_path, serve):
    """A spec made by a generic model: its stored conversation starts with the prompt."""
    server = serve(answer=CLEAN, gets={"/props": {"default_generation_settings": {"n_ctx": 32768}}})
    assert run("generate", "a dragon", "--base-url", server.url, "--model", "qwen", "-q", "--no-constrain",
               "-o", tmp_path / "d.yaml").exit_code == 0
    return tmp_path / "d.yaml"


@pytest.mark.parametrize("gets", [{"/props": {"default_generation_settings": {"n_ctx": 32768}}},
                                  {"/v1/models": {"data": [{"id": "qwen", "max_model_len": 32768}]}}])
def test_the_context_comes_from_the_server_and_a_first_edit_keeps_the_worked_example(serve, tmp_path, gets):
    spec = _generic_spec(tmp_path, serve)
    server = serve(answer=CLEAN, gets=gets)
    res = run("edit", spec, "make it gold", "--base-url", server.url, "--model", "qwen", "-q", "--no-constrain",
              "-o", tmp_path / "e.yaml")
    assert res.exit_code == 0, res.output
    sent = server.requests[0]["messages"]
    example = [{"role": m.role, "content": m.content} for m in worked_example()]
    assert sent[1:3] == example  # before: dropped, at the 8k assumed for every model
    assert "dropped" not in res.stderr and "lowered" not in res.stderr


def test_a_small_context_lowers_the_answer_budget_and_keeps_the_worked_example(serve, tmp_path):
    spec = _generic_spec(tmp_path, serve)
    server = serve(answer=CLEAN)
    res = run("edit", spec, "make it gold", "--base-url", server.url, "--model", "qwen", "--no-constrain",
              "--context", 8192, "-q", "-o", tmp_path / "e.yaml")
    assert res.exit_code == 0, res.output
    assert server.requests[0]["messages"][1:3] == [{"role": m.role, "content": m.content} for m in worked_example()]
    assert "lowered to" in res.stderr and server.requests[0]["max_tokens"] < 4096
    res = run("edit", spec, "make it gold", "--base-url", server.url, "--model", "qwen", "--no-constrain",
              "--context", 2048, "-q")
    assert res.exit_code == 1 and "--context" in res.stderr and "Traceback" not in res.output


def test_a_local_models_context_is_read_from_its_config(tiny_llama):
    from omostc.llm import TransformersChatBackend

    assert TransformersChatBackend(str(tiny_llama)).context == 8192


# --- --partial ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["generate", "a dragon"], ["edit", "SPEC", "more dragons"]])
def test_partial_keeps_the_complete_calls_of_an_answer_cut_short(serve, tmp_path, command):
    (tmp_path / "spec.yaml").write_text((REPO / "specs" / "dragon.yaml").read_text(encoding="utf-8"))
    command = [str(tmp_path / "spec.yaml") if c == "SPEC" else c for c in command]
    server = serve(answer=TRUNCATED)
    res = run(*command, "--base-url", server.url, "--model", "omost-llama-3-8b", "-q", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 1 and "--partial" in res.stderr
    res = run(*command, "--base-url", server.url, "--model", "omost-llama-3-8b", "-q", "--partial",
              "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output  # before: no such option
    assert "truncated" in res.stderr and "keeps the calls completed" in res.stderr
    assert len(load_spec(tmp_path / "s.yaml").regions) == 1


def test_chat_has_partial(serve, tmp_path, monkeypatch):
    server = serve(answer=TRUNCATED)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["chat", "--base-url", server.url, "--model", "omost-llama-3-8b", "--partial"],
                             input="a dragon\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "saved" in res.output and len(load_spec(tmp_path / "chat.yaml").regions) == 1


def test_chat_keeps_a_generic_models_worked_example_within_its_context(serve, tmp_path, monkeypatch):
    server = serve(answer=CLEAN)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["chat", "--base-url", server.url, "--model", "qwen", "--no-constrain",
                                    "--context", "8192", "-q"], input="a dragon\nmake it gold\n/quit\n")
    assert res.exit_code == 0, res.output
    example = [{"role": m.role, "content": m.content} for m in worked_example()]
    assert [r["messages"][1:3] for r in server.requests] == [example, example]  # before: dropped the second time
    assert server.requests[1]["max_tokens"] < 4096
