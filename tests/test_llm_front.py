"""Issue 14, the LLM front through the commands people run: servers that misbehave (malformed or
error events, error statuses, silence, stalls, Ctrl-C, outputs that cannot be written), editing
hand-edited specs, chat after a failure, and specs whose stored conversation diffs well."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO
from fake_llm_server import DONE, delta, event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omostc import compile_canvas, load_spec
from omostc.cli import main

CLEAN = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8")
TRUNCATED = CLEAN[: len(CLEAN) // 2]
HALF = CLEAN[: CLEAN.index("# Add a mighty dragon.")]  # the global description and one region, complete


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    """Recovery files (omostc-answer-*.md) go to the current folder: not the repository's."""
    monkeypatch.chdir(tmp_path)


def stream(*chunks: bytes, status: int = 200, content_type: str = "text/event-stream", pause: float = 0.0):
    def reply(h):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.end_headers()
        for chunk in chunks:
            if pause:
                time.sleep(pause)
            h.write(chunk)
    return reply


def answer(text: str, **kw):
    return stream(*(delta(text[i:i + 40]) for i in range(0, len(text), 40)), DONE, **kw)


def in_turn(*replies):
    replies = list(replies)
    return lambda h: replies.pop(0)(h)


def stall_after(*chunks: bytes, delay: float = 0.0):
    """Sends ``chunks`` (after ``delay`` seconds), then nothing until the test ends."""
    def reply(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.owner.closing.wait(delay)
        for chunk in chunks:
            h.write(chunk)
        h.owner.closing.wait(60)
    return reply


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def generate(server, *args, **kw):
    return run("generate", "a dragon", "--base-url", server.url, "--model", "omost", *args, **kw)


def clean_failure(res, *expected: str, code: int = 1):
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output, res.exception
    for text in expected:
        assert text in res.stderr, res.stderr


def recovery_file(stderr: str) -> Path:
    """The recovery file an error message names."""
    for word in stderr.replace("'", " ").split():
        if "omostc-answer-" in word:
            return Path(word.rstrip(".,;:)"))
    raise AssertionError(f"no recovery file named in: {stderr}")


# --- servers that misbehave: malformed events ----------------------------------------------------

@pytest.mark.parametrize(("bad", "named"), [
    (b'data: {"choices": "oops"}\n\n', '"choices" is text, not a list'),
    (b"data: [1,2]\n\n", "a list, not an object"),
    (b'data: {"choices": [{"delta": {"content": 5}}]}\n\n', '"content" is a number, not text'),
    (b"data: {not json\n\n", "not JSON"),
    (b'data: {"choices": [{"delta": {"content": "x"}, "finish_reason": 5}]}\n\n', '"finish_reason" is a number'),
    (b'data: {"choices": [{"index": 0}]}\n\n', 'no "delta"'),
    (b'data: {"id": "x"}\n\n', 'no "choices"'),
])
def test_a_malformed_event_is_a_clear_error_that_names_the_problem(serve, bad, named):
    server = serve(stream(bad, DONE))
    res = generate(server, "-q")
    clean_failure(res, named, "malformed", server.url)


def test_malformed_events_among_valid_ones_are_skipped_with_a_warning(serve, tmp_path):
    chunks = [delta(CLEAN[i:i + 50]) for i in range(0, len(CLEAN), 50)]
    chunks.insert(3, b'data: {"choices": "oops"}\n\n')
    server = serve(stream(*chunks, DONE))
    res = generate(server, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "skipped 1 malformed event" in res.stderr and '"choices" is text' in res.stderr


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["choices", "delta", "message", "content", "finish_reason", "error",
                                         "index", "role", "object", "message"]), inner, max_size=4),
                    max_leaves=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON, st.sampled_from(["data", "error", "event"]))
def test_events_of_any_shape_end_in_text_or_a_clear_error(value, field):
    from omostc.diagnostics import LLMError
    from omostc.llm.replies import ReplyBounds, server_sent_text

    data = (f"{field}: {json.dumps(value)}\n\n".encode() + delta("canvas") + DONE)
    try:
        list(server_sent_text(io.BytesIO(data), ReplyBounds.for_tokens(64), "http://x/v1", "text/event-stream",
                               []))
    except LLMError as exc:
        assert str(exc) and "Traceback" not in str(exc)


# --- servers that misbehave: error events and error statuses ------------------------------------

LLAMA_OVERFLOW = (b'error: {"code":400,"message":"the request exceeds the available context size, try increasing it",'
                  b'"type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}\n\n')
VLLM_OVERFLOW = event({"error": {"object": "error", "message": "This model's maximum context length is 8192 tokens",
                                 "type": "BadRequestError", "param": None, "code": 400}})
VLLM_OLD = event({"object": "error", "message": "This model's maximum context length is 8192 tokens",
                  "type": "BadRequestError", "param": None, "code": 400})


@pytest.mark.parametrize(("error", "message"), [
    (LLAMA_OVERFLOW, "exceeds the available context size"),
    (VLLM_OVERFLOW, "maximum context length is 8192"),
    (VLLM_OLD, "maximum context length is 8192"),
    (b"event: error\ndata: out of memory\n\n", "out of memory"),
    (event({"error": "overloaded"}), "overloaded"),
])
def test_an_error_event_mid_stream_reports_the_servers_message(serve, error, message):
    server = serve(stream(delta("```python\ncanvas = Canvas()\n"), error))
    res = generate(server, "-q")
    clean_failure(res, message, server.url)
    assert "no Canvas program" not in res.stderr and "did not compile" not in res.stderr


@pytest.mark.parametrize(("status", "body", "message"), [
    (400, b'{"error":{"code":400,"message":"the request exceeds the available context size","type":"x"}}',
     "exceeds the available context size"),
    (400, b'{"object":"error","message":"maximum context length is 8192 tokens","type":"BadRequestError"}',
     "maximum context length is 8192 tokens"),
    (404, b'{"error":"model \\"x\\" not found, try pulling it first"}', 'model "x" not found'),
    (422, b'{"detail":[{"loc":["body","messages"],"msg":"field required","type":"missing"}]}', "field required"),
    (503, b"Service Unavailable: loading model", "loading model"),
    (500, b"", "HTTP 500"),
])
def test_an_error_status_reports_the_servers_message(serve, status, body, message):
    server = serve(stream(body, status=status, content_type="application/json"))
    clean_failure(generate(server, "-q"), f"HTTP {status}", message)


@pytest.mark.parametrize("content_type", ["text/event-stream", "text/plain"])
def test_an_error_body_under_a_streams_content_type_reports_the_servers_message(serve, content_type):
    server = serve(stream(b'{"error": {"message": "model is still loading"}}', content_type=content_type))
    clean_failure(generate(server, "-q"), "model is still loading")
    server = serve(stream(b"<html><body>Bad Gateway</body></html>", content_type=content_type))
    clean_failure(generate(server, "-q"), "not a stream of server-sent events", "Bad Gateway")


# --- servers that misbehave: silence, stalls, --timeout -------------------------------------------

def test_a_waiting_line_shows_while_no_token_has_arrived(serve, tmp_path):
    server = serve(stall_after(delta(CLEAN), DONE, delay=2.5))
    res = generate(server, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    waiting = [line for line in res.stderr.splitlines() if "waiting for" in line]
    assert waiting and " 2 s" in waiting[0], res.stderr  # plain lines, throttled: not a terminal
    assert len(waiting) <= 2
    server = serve(stall_after(delta(CLEAN), DONE, delay=2.5))
    res = generate(server, "-q", "-o", tmp_path / "t.yaml")
    assert res.exit_code == 0 and "waiting for" not in res.stderr, res.stderr


def test_the_waiting_line_on_a_terminal_is_rewritten_in_place(serve):
    from omostc.cli.llm_report import Waiting

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    waiting = Waiting(out, "the server", tick=0.05)
    waiting.start()
    time.sleep(0.3)
    waiting.stop()
    text = out.getvalue()
    assert "\r" in text and "waiting for the server" in text and "\n" not in text
    assert text.endswith("\r\x1b[K")  # the line is cleared before the answer streams


@pytest.mark.slow
def test_a_stall_mid_stream_keeps_the_answer_so_far(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = serve(stall_after(delta(HALF), delta("canvas.add_local_description(\n    location='on the")))
    started = time.perf_counter()
    res = generate(server, "-q", "--timeout", 1, "-o", tmp_path / "s.yaml")
    assert time.perf_counter() - started < 30
    clean_failure(res, "stalled", "no more text within 1 s", "--timeout")
    saved = recovery_file(res.stderr)
    assert saved.read_text(encoding="utf-8").startswith(HALF)
    assert not (tmp_path / "s.yaml").exists()
    res = run("compile", saved, "--partial", "-o", tmp_path / "p.yaml")
    assert res.exit_code == 0, res.output
    assert len(load_spec(tmp_path / "p.yaml").regions) == 1


@pytest.mark.slow
def test_no_first_token_within_the_timeout_is_a_clear_error(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = serve(stall_after())
    res = generate(server, "-q", "--timeout", 1)
    clean_failure(res, "no text within 1 s", "--timeout")
    assert "omostc-answer-" not in res.stderr  # nothing arrived, nothing to keep


@pytest.mark.slow
def test_the_timeout_bounds_gaps_not_a_slow_steady_answer(serve, tmp_path):
    server = serve(answer(CLEAN, pause=0.03))  # ~2 s in all, never 1 s without text
    res = generate(server, "-q", "--timeout", 1, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output


def test_the_timeout_default_is_documented():
    res = run("generate", "--help")
    assert "--timeout" in res.output and "600" in res.output and "stall" in res.output


# --- retries -----------------------------------------------------------------------------------

def test_retried_attempts_are_separated_and_each_error_is_shown(serve, tmp_path):
    server = serve(in_turn(answer(TRUNCATED), answer("I'm sorry, I cannot do that."), answer(CLEAN)))
    res = generate(server, "--retries", 2, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    err = res.stderr
    assert "thI'm sorry" not in err and TRUNCATED[-20:] + "I'm" not in err
    assert "attempt 1 of 3" in err and "attempt 2 of 3" in err and "truncated" in err
    assert "no Canvas program found" in err
    assert err.index("no Canvas program found") < err.index("canvas = Canvas()", err.index("I'm sorry"))


def test_retried_attempts_are_one_line_each_when_quiet(serve, tmp_path):
    server = serve(in_turn(answer(TRUNCATED), answer("I'm sorry, I cannot do that."), answer(CLEAN)))
    res = generate(server, "-q", "--retries", 2, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("attempt ")]
    assert len(lines) == 2 and "attempt 1 of 3" in lines[0] and "attempt 2 of 3" in lines[1], res.stderr
    assert "no Canvas program found" in lines[1]
    assert "|" not in res.stderr  # no excerpts: one line each


# --- Ctrl-C --------------------------------------------------------------------------------------

def ctrl_c(server, tmp_path, *args: str):
    proc = subprocess.Popen([sys.executable, "-m", "omostc.cli", "generate", "a dragon", "--base-url", server.url,
                             "--model", "omost", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # the request sent, and what the server sends read
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode("utf-8", "replace")


@pytest.mark.slow
def test_ctrl_c_before_the_first_token_says_it_was_interrupted(serve, tmp_path):
    code, err = ctrl_c(serve(stall_after()), tmp_path)
    assert code == 130, err
    assert "interrupted" in err and "no Canvas program" not in err and "Traceback" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_ctrl_c_mid_stream_says_it_was_interrupted_and_keeps_the_answer(serve, tmp_path, quiet):
    code, err = ctrl_c(serve(stall_after(delta(TRUNCATED))), tmp_path, *quiet, "-o", "out.yaml")
    assert code == 130, err
    assert "interrupted" in err and "token limit" not in err and "Traceback" not in err, err
    saved = tmp_path / recovery_file(err)
    assert saved.read_text(encoding="utf-8") == TRUNCATED


# --- outputs that cannot be written ----------------------------------------------------------------

@pytest.mark.parametrize("bad", ["/proc/x.yaml", "{tmp}", "/dev/null/x.yaml", "x" * 300 + ".yaml", "a\x00b.yaml"])
def test_an_unwritable_output_is_found_before_asking_the_model(serve, tmp_path, bad):
    server = serve(answer(CLEAN))
    res = generate(server, "-q", "-o", bad.format(tmp=tmp_path))
    clean_failure(res, "cannot write")
    assert server.requests == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_output_in_a_read_only_folder_is_found_before_asking_the_model(serve, tmp_path):
    server = serve(answer(CLEAN))
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        clean_failure(generate(server, "-q", "-o", folder / "x.yaml"), "cannot write")
    finally:
        folder.chmod(0o755)
    assert server.requests == []


def test_edit_and_chat_check_their_output_first_too(serve, tmp_path, monkeypatch):
    server = serve(answer(CLEAN))
    res = run("edit", REPO / "specs" / "dragon.yaml", "red", "--base-url", server.url, "-q", "-o", "/proc/x.yaml")
    clean_failure(res, "cannot write")
    res = run("chat", "--base-url", server.url, "-q", "--save", "/proc/x.yaml", input="a dragon\n/quit\n")
    clean_failure(res, "cannot write")
    assert server.requests == []


def test_a_missing_output_folder_is_created_with_a_note_as_compile_does(serve, tmp_path):
    server = serve(answer(CLEAN))
    res = generate(server, "-q", "-o", tmp_path / "new" / "deeper" / "s.yaml")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "new" / "deeper" / "s.yaml").is_file()
    assert f"created the folder {tmp_path / 'new' / 'deeper'}" in res.stderr
    res = run("compile", REPO / "specs" / "src" / "dragon.md", "-o", tmp_path / "other" / "s.yaml")
    assert res.exit_code == 0 and (tmp_path / "other" / "s.yaml").is_file()  # compile -o creates it too
    # a missing folder under something that is not one is an error, before asking
    (tmp_path / "file").write_text("x")
    res = generate(server, "-q", "-o", tmp_path / "file" / "sub" / "s.yaml")
    clean_failure(res, "cannot write")
    assert len(server.requests) == 1


def test_an_answer_that_cannot_be_written_after_all_is_kept_in_a_recovery_file(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()

    def reply(h):  # the output's folder turns into a file while the model answers
        out.rmdir()
        out.write_text("in the way")
        answer(CLEAN)(h)

    server = serve(reply)
    res = generate(server, "-q", "-o", out / "s.yaml")
    clean_failure(res, "cannot write")
    saved = recovery_file(res.stderr)
    assert (tmp_path / saved).read_text(encoding="utf-8") == CLEAN
    assert run("compile", tmp_path / saved, "-o", tmp_path / "s.yaml").exit_code == 0


# --- editing and chatting -----------------------------------------------------------------------

def test_edit_carries_hand_edits(serve, tmp_path):
    server = serve(in_turn(answer(CLEAN), answer(CLEAN)))
    spec = tmp_path / "dragon.yaml"
    assert generate(server, "-q", "-o", spec).exit_code == 0
    text = spec.read_text(encoding="utf-8")
    assert "HTML_web_color_name='darkolivegreen'" in text  # in the stored answer
    assert text.count("color: darkolivegreen") == 1
    spec.write_text(text.replace("color: darkolivegreen", "color: gold"), encoding="utf-8")  # by hand
    res = run("edit", spec, "make it night", "--base-url", server.url, "-q", "-o", tmp_path / "night.yaml")
    assert res.exit_code == 0, res.output
    messages = server.requests[1]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert "HTML_web_color_name='gold'" in messages[2]["content"]
    assert "darkolivegreen" not in messages[2]["content"]
    assert compile_canvas(messages[2]["content"]).scene.regions == load_spec(spec).regions
    assert "edited by hand" in res.stderr


def test_edit_of_an_unchanged_spec_sends_its_stored_answer(serve, tmp_path):
    server = serve(in_turn(answer(CLEAN), answer(CLEAN)))
    spec = tmp_path / "dragon.yaml"
    assert generate(server, "-q", "-o", spec).exit_code == 0
    res = run("edit", spec, "make it night", "--base-url", server.url, "-q", "-o", tmp_path / "night.yaml")
    assert res.exit_code == 0, res.output
    assert server.requests[1]["messages"][2]["content"] == CLEAN and "by hand" not in res.stderr


def test_chat_after_a_server_error_sends_no_unanswered_turn_and_undo_rewrites_the_file(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dino = CLEAN.replace("dragon", "dinosaur")
    server = serve(in_turn(answer(CLEAN), stream(b'{"error": "overloaded"}', status=503), answer(dino),
                           answer(dino)))
    res = run("chat", "--base-url", server.url, "-q",
              input="a dragon\nmake it a dinosaur\nmake it a dinosaur\n/undo\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "overloaded" in res.output
    third = [m["role"] for m in server.requests[2]["messages"]]
    assert third == ["system", "user", "assistant", "user"]
    assert "dinosaur" not in load_spec(tmp_path / "chat.yaml").global_description.description  # /undo rewrote it
    assert "saved chat.yaml" in res.output.split("undone")[1]


def test_chat_retry_after_a_server_error_retries_the_failed_turn(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = serve(in_turn(stream(b'{"error": "overloaded"}', status=503), answer(CLEAN)))
    res = run("chat", "--base-url", server.url, "-q", input="a dragon\n/retry\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "nothing to retry" not in res.output and "saved chat.yaml" in res.output
    assert [m["role"] for m in server.requests[1]["messages"]] == ["system", "user"]


def test_chat_interrupted_before_the_first_token_keeps_no_turn_and_retries_it():
    from omostc.llm import ChatSession, SamplingOptions

    class Backend:
        model, calls = "m", []

        def stream(self, messages, sampling):
            self.calls.append([m.role for m in messages])
            if len(self.calls) == 1:
                raise KeyboardInterrupt  # Ctrl-C while waiting for the first token
            yield CLEAN

    session = ChatSession(Backend(), SamplingOptions())
    with pytest.raises(Exception, match="no Canvas program"):
        session.ask("a dragon")
    assert [m.role for m in session.messages] == ["system"]
    session.retry()
    assert Backend.calls == [["system", "user"], ["system", "user"]]
    assert [m.role for m in session.messages] == ["system", "user", "assistant"] and session.scene is not None


def test_chat_help_says_answers_compile_when_complete(serve, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = serve(answer(CLEAN))
    res = run("chat", "--base-url", server.url, "-q", input="/help\n/quit\n")
    assert "as it arrives" not in res.output and "when the answer is complete" in res.output
    assert "as it arrives" not in run("chat", "--help").output


def test_the_stored_conversation_is_written_as_block_text(serve, tmp_path):
    server = serve(answer(CLEAN))
    spec = tmp_path / "dragon.yaml"
    assert generate(server, "-q", "-o", spec).exit_code == 0
    text = spec.read_text(encoding="utf-8")
    assert "content: |" in text and "\\n" not in text
    assert "    canvas = Canvas()\n" in text
    assert load_spec(spec).provenance.conversation[-1].content == CLEAN


TEXTS = ["a\nb", "a\nb\n", "a\nb\n\n", "\na\nb", "\n\na\n", "  a\nb", "a  \nb", "a\n  \nb", "a\tb\nc", "a\r\nb",
         "a\nb ", "a\n\tb", " \n", "\n", "a\u2028b", "a\x85b\n", "a\nb\u00a0", "é\n😀\n", "- a\n- b", "# x\ny: z"]


@pytest.mark.parametrize("text", TEXTS)
def test_any_text_in_a_conversation_reads_back_exactly(text):
    from omostc.spec.model import Message, Provenance
    from omostc.spec.yamlio import LOADERS, dumps_spec, loads_spec

    scene = compile_canvas(CLEAN).scene
    scene.provenance = Provenance(prompt=text, model="m", conversation=[Message("user", text),
                                                                         Message("assistant", text)])
    dumped = dumps_spec(scene)
    for loader in LOADERS:
        assert loads_spec(dumped, loader=loader).provenance.conversation[1].content == text
    assert yaml.safe_load(dumped)["provenance"]["conversation"][1]["content"] == text  # any YAML reader


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r#:-|>'\"é\u2028\x85\u00a0")), max_size=12))
def test_conversation_text_round_trips(text):
    from omostc.spec.model import Message, Provenance
    from omostc.spec.yamlio import LOADERS, dumps_spec, loads_spec

    scene = compile_canvas(CLEAN).scene
    scene.provenance = Provenance(conversation=[Message("assistant", text)])
    dumped = dumps_spec(scene)
    for loader in LOADERS:
        assert loads_spec(dumped, loader=loader).provenance.conversation[0].content == text


def test_hand_written_block_text_still_loses_its_trailing_break(tmp_path):
    text = (REPO / "specs" / "dragon.yaml").read_text(encoding="utf-8")
    text = text.replace("  description: A fierce battle between warriors and a dragon.\n",
                        "  description: |\n    A fierce battle between warriors and a dragon.\n\n", 1)
    from omostc.spec.yamlio import loads_spec

    assert loads_spec(text).global_description.description == "A fierce battle between warriors and a dragon."


# --- quiet tools ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    folder = tmp_path_factory.mktemp("tiny-llama")
    out = subprocess.run([sys.executable, "-m", "omostc.cli", "dev", "tiny-llama", str(folder)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert out.returncode == 0, out.stderr
    return folder, out


def test_dev_tiny_llama_prints_no_blank_lines(tiny_llama):
    folder, out = tiny_llama
    assert out.stdout == f"{folder}\n" and out.stderr == "", (out.stdout, out.stderr)


@pytest.mark.slow
def test_loading_a_model_here_shows_no_progress_bar_unless_verbose(tiny_llama):
    folder, _ = tiny_llama
    args = [sys.executable, "-m", "omostc.cli", "generate", "a cat", "--model", str(folder), "--no-constrain",
            "--max-tokens", "16", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    quiet = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert "Loading weights" not in quiet.stderr, quiet.stderr
    verbose = subprocess.run([*args, "-v"], capture_output=True, text=True, env=env, timeout=300)
    assert "Loading weights" in verbose.stderr, verbose.stderr


def test_edit_keeps_an_omost_conversation_that_starts_like_the_worked_example(serve, tmp_path):
    """The worked example is left out of a stored conversation only where the generic system
    prompt put it in: an Omost model's conversation whose first exchange happens to be the
    example's (specs/dragon.yaml's own prompt and canvas) keeps every turn after an edit."""
    from omostc.llm.conversation import worked_example

    ask, canvas = (m.content for m in worked_example())
    server = serve(in_turn(answer(canvas), answer(canvas.replace("dragon", "dinosaur"))))
    spec, edited = tmp_path / "dragon.yaml", tmp_path / "dino.yaml"
    res = run("generate", ask, "--base-url", server.url, "--model", "omost", "-q", "-o", spec)
    assert res.exit_code == 0, res.output
    res = run("edit", spec, "make it a dinosaur", "--base-url", server.url, "-q", "-o", edited)
    assert res.exit_code == 0, res.output
    assert [m["role"] for m in server.requests[1]["messages"]] == ["system", "user", "assistant", "user"]
    turns = load_spec(edited).provenance.conversation
    assert [(t.role, t.content[:20]) for t in turns] == [
        ("user", ask[:20]), ("assistant", canvas[:20]), ("user", "make it a dinosaur"[:20]),
        ("assistant", canvas.replace("dragon", "dinosaur")[:20])]
