"""Issue 12, the LLM front: every reply (a model's answer, a server's stream, a person's Ctrl-C)
gets a clean error at bounded cost, and nothing from a model or server acts on the terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner
from conftest import REPO, dev_model
from fake_llm_server import DONE, delta, event

from omostc.cli import main

CLEAN = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8")
HOSTILE = ("\x1b]0;pwned\x07", "\x1b[2J")


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    """Recovery files (omostc-answer-*.md) go to the current folder: not the repository's."""
    monkeypatch.chdir(tmp_path)


def stream(*chunks: bytes, status: int = 200, content_type: str = "text/event-stream"):
    def reply(h):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.end_headers()
        for chunk in chunks:
            h.write(chunk)
    return reply


def run(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], **kw)


def generate(server, *args):
    return run("generate", "a dragon", "--base-url", server.url, "--model", "omost", *args)


def clean_failure(res, *expected: str):
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output, res.exception
    for text in expected:
        assert text in res.stderr, res.stderr


# --- 1. chat: /save to a path that cannot be written keeps the session --------------------------

@pytest.mark.parametrize("bad", ["/proc/x.yaml", ".", "/", "a\x00b.yaml", "/dev/null/x.yaml", "x" * 300 + ".yaml"])
def test_chat_save_to_an_unwritable_path_is_a_one_line_error_and_the_session_goes_on(serve, tmp_path, monkeypatch,
                                                                                   bad):
    server = serve(stream(delta(CLEAN), DONE))
    monkeypatch.chdir(tmp_path)
    res = run("chat", "--base-url", server.url, "-q", input=f"a dragon\n/save {bad}\n/save good.yaml\n/quit\n")
    assert res.exit_code == 0 and res.exception is None, res.output
    assert "saved good.yaml" in res.output and (tmp_path / "good.yaml").is_file()
    errors = [line for line in res.output.splitlines() if "error" in line]
    assert len(errors) == 1 and "cannot write" in errors[0] and "\x00" not in res.output, res.output


def test_generate_to_an_unwritable_output_is_a_located_error(serve):
    server = serve(stream(delta(CLEAN), DONE))
    res = generate(server, "-q", "-o", "/proc/x.yaml")
    clean_failure(res, "/proc/x.yaml: error: cannot write")


def test_chat_keeps_its_conversation_after_a_server_error(tmp_path, monkeypatch, serve):
    answers = [stream(delta(CLEAN), DONE), stream(b'{"error": "overloaded"}', status=503), stream(delta(CLEAN), DONE)]
    server = serve(lambda h: answers.pop(0)(h))
    monkeypatch.chdir(tmp_path)
    res = run("chat", "--base-url", server.url, "-q", input="a dragon\nmake it red\n/retry\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "HTTP 503" in res.output and "overloaded" in res.output
    third = [(m["role"], m["content"]) for m in server.requests[2]["messages"][1:]]
    assert third == [("user", "a dragon"), ("assistant", CLEAN), ("user", "make it red")]  # the retry, complete


# --- 3. the client reads a bounded amount, for a bounded time -----------------------------------

@pytest.fixture
def serve_forever(serve):
    def start(chunk: bytes):
        def reply(h):
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.end_headers()
            while not h.owner.closing.is_set():
                h.write(chunk)
        return serve(reply)
    return start


def test_a_server_that_ignores_max_tokens_is_cut_off_at_a_bound_with_the_answer_so_far(serve_forever):
    server = serve_forever(delta("canvas = 1 # " + "x" * 200 + "\n"))
    started = time.perf_counter()
    res = generate(server, "-q", "--max-tokens", 16)
    clean_failure(res, "more than", "--max-tokens 16")
    assert time.perf_counter() - started < 60  # a hang guard, not a timing: the bound only catches a stall
    assert server.sent < 16 * 2**20  # the bound is ~66 KB of answer; the rest is what sockets buffer

    from omostc.llm import LLMError, LLMSettings, SamplingOptions
    from omostc.llm import generate as ask

    with pytest.raises(LLMError) as exc:
        ask("a dragon", LLMSettings(model="omost", base_url=server.url, sampling=SamplingOptions(max_tokens=16)))
    # cut at 2 x 16 + 64 pieces of text (issue 14), before the 64 KiB of answer text
    assert 96 * 200 <= len(exc.value.answer) <= 70 * 1024 and exc.value.answer.startswith("canvas = 1 # xxx")


@pytest.mark.parametrize("chunk", [b": keep-alive\n\n", event({"choices": []}), b"\n"])
def test_a_stream_of_events_without_text_is_cut_off(serve_forever, chunk):
    server = serve_forever(chunk)
    res = generate(server, "-q", "--max-tokens", 16)
    clean_failure(res, "more than")
    assert server.sent < 32 * 2**20


def test_an_endless_line_is_cut_off(serve_forever):
    server = serve_forever(b"data: " + b"x" * 65536)
    res = generate(server, "-q", "--max-tokens", 16)
    clean_failure(res, "line longer than")
    assert server.sent < 16 * 2**20


def test_memory_stays_bounded_while_reading_a_hostile_stream(serve_forever):
    code = ("import sys, tracemalloc; from omostc.llm import LLMError, OpenAIChatBackend, SamplingOptions, Message\n"
            "tracemalloc.start()\n"
            "for url in sys.argv[1:]:\n"
            "    try:\n"
            "        list(OpenAIChatBackend(url, 'omost').stream([Message('user', 'x')], SamplingOptions()))\n"
            "    except LLMError as exc: print(exc)\n"
            "print(tracemalloc.get_traced_memory()[1])\n")
    urls = [serve_forever(c).url for c in (b"data: " + b"x" * 65536, delta("y" * 1000), b": ping\n\n")]
    out = subprocess.run([sys.executable, "-c", code, *urls], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    *errors, peak = out.stdout.splitlines()
    assert len(errors) == 3 and int(peak) < 32 * 2**20, out.stdout  # default --max-tokens 4096


def stall(first: bytes, then: bytes = b"", every: float = 0.0):
    def reply(h):
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.write(first)
        while every and not h.owner.closing.is_set():  # drip a byte now and then: no read ever times out
            time.sleep(every)
            h.write(then)
        h.owner.closing.wait(30)
    return reply


@pytest.mark.slow
@pytest.mark.parametrize("reply", [stall(delta("canvas = Canvas()\n")),
                                   stall(b'data: {"choices": [{"delta": {"content": "', b"x", every=0.05)])
def test_the_whole_request_has_a_deadline(serve, reply):
    server = serve(reply)
    started = time.perf_counter()
    res = generate(server, "-q", "--timeout", 1)
    clean_failure(res, "within 1 s", "--timeout")
    assert time.perf_counter() - started < 60  # a hang guard, not a timing: the bound only catches a stall


def test_a_steady_server_that_ignores_max_tokens_is_cut_off(serve):
    # issue 14: --timeout bounds silence (to connect, for the first text, between texts), not a server
    # that answers steadily; one that sends more pieces of text than max_tokens allows is cut off
    server = serve(stall(delta("canvas"), delta("x"), every=0.01))
    started = time.perf_counter()
    res = generate(server, "-q", "--timeout", 1, "--max-tokens", 16)
    clean_failure(res, "more than 96 pieces of text", "--max-tokens 16")
    assert time.perf_counter() - started < 60  # a hang guard, not a timing: the bound only catches a stall


@pytest.mark.slow
def test_a_server_that_never_answers_times_out(serve):
    def reply(h):
        h.owner.closing.wait(30)
    server = serve(reply)
    started = time.perf_counter()
    res = generate(server, "-q", "--timeout", 1)
    clean_failure(res, "within 1 s")
    assert time.perf_counter() - started < 60  # a hang guard, not a timing: the bound only catches a stall


# --- 4. nothing from a model or a server acts on the terminal -----------------------------------

def assert_escaped(text: str):
    for raw in HOSTILE:
        assert raw not in text
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned\\x07" in text or "\\x1b[2J" in text, text


def test_terminal_escapes_in_a_streamed_answer_are_shown_escaped(serve, tmp_path, monkeypatch):
    answer = CLEAN.replace("# Initialize the canvas", "# Initialize the canvas " + "".join(HOSTILE))
    assert answer != CLEAN
    server = serve(stream(*(delta(answer[i:i + 7]) for i in range(0, len(answer), 7)), DONE))
    res = generate(server, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert_escaped(res.stderr)
    res = run("edit", tmp_path / "s.yaml", "red", "--base-url", server.url, "-o", tmp_path / "t.yaml")
    assert res.exit_code == 0, res.output
    assert_escaped(res.stderr)
    monkeypatch.chdir(tmp_path)
    res = run("chat", "--base-url", server.url, input="a dragon\n/quit\n")
    assert res.exit_code == 0, res.output
    assert_escaped(res.output)


def test_an_error_body_nested_too_deep_is_still_a_clear_error(serve):
    server = serve(stream(b"[" * 60_000, status=500))
    clean_failure(generate(server, "-q"), "HTTP 500")
    server = serve(stream(b"[" * 60_000, content_type="application/json"))
    clean_failure(generate(server, "-q"), "not JSON")


@pytest.mark.parametrize("body", [
    json.dumps({"error": {"message": "bad model " + "".join(HOSTILE)}}).encode(),
    ("<html>bad model " + "".join(HOSTILE) + "</html>").encode(),
])
def test_terminal_escapes_in_a_server_error_are_shown_escaped(serve, tmp_path, monkeypatch, body):
    server = serve(stream(body, status=500, content_type="text/html"))
    res = generate(server, "-q")
    clean_failure(res, "HTTP 500", "bad model")
    assert_escaped(res.stderr)
    monkeypatch.chdir(tmp_path)
    res = run("chat", "--base-url", server.url, input="a dragon\n/quit\n")
    assert res.exit_code == 0 and "HTTP 500" in res.output, res.output
    assert_escaped(res.output)


def test_terminal_escapes_in_the_diagnostics_of_an_answer_are_shown_escaped(serve, tmp_path, monkeypatch):
    answer = "```python\ncanvas = Canvas()\ncanvas.nope('" + "".join(HOSTILE) + "')\n```"
    server = serve(stream(delta(answer), DONE))
    res = generate(server, "-q")
    clean_failure(res, "unknown canvas method")
    assert_escaped(res.stderr)
    monkeypatch.chdir(tmp_path)
    res = run("chat", "--base-url", server.url, "-q", input="a dragon\n/quit\n")
    assert res.exit_code == 0 and "unknown canvas method" in res.output, res.output
    assert_escaped(res.output)


def test_terminal_escapes_in_an_error_event_are_shown_escaped(serve):
    server = serve(stream(delta("canvas"), event({"error": {"message": "boom " + "".join(HOSTILE)}})))
    res = generate(server, "-q")
    clean_failure(res, "boom")
    assert_escaped(res.stderr)


# --- 5. malformed events, error events ----------------------------------------------------------

@pytest.mark.parametrize("bad", [
    b'data: {"choices": "oops"}\n\n', b"data: [1, 2]\n\n", b'data: {"choices": [{"delta": {"content": 5}}]}\n\n',
    b'data: {"choices": [{"delta": null}]}\n\n', b'data: {"choices": [7]}\n\n', b'data: "text"\n\n',
    b"data: {not json\n\n", b'data: {"choices": [{"delta": ["x"]}]}\n\n', b"data: null\n\n",
    b"data: " + b"[" * 100_000 + b"\n\n",  # deeper than Python's recursion limit
])
def test_malformed_events_are_a_clear_error_when_nothing_valid_came(serve, bad):
    server = serve(stream(bad, bad, DONE))
    res = generate(server, "-q")
    clean_failure(res, "no text", "2 malformed events", server.url)


def test_malformed_events_among_valid_ones_are_skipped(serve, tmp_path):
    chunks = [delta(CLEAN[i:i + 50]) for i in range(0, len(CLEAN), 50)]
    chunks.insert(3, b'data: {"choices": "oops"}\n\n')
    chunks.insert(5, b"data: [1, 2]\n\n")
    server = serve(stream(*chunks, DONE))
    res = generate(server, "-q", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("error", [
    event({"error": {"message": "context length exceeded", "code": 400}}),
    b'event: error\ndata: {"message": "context length exceeded"}\n\n',
    b"event: error\ndata: context length exceeded\n\n",
    event({"error": "context length exceeded"}),
])
def test_error_events_are_reported_with_the_answer_so_far(serve, error):
    server = serve(stream(delta("```python\ncanvas = Canvas()\n"), error, DONE))
    res = generate(server, "-q")
    clean_failure(res, "context length exceeded", server.url)
    assert "no Canvas program" not in res.stderr

    from omostc.llm import LLMError, LLMSettings
    from omostc.llm import generate as ask

    with pytest.raises(LLMError) as exc:
        ask("a dragon", LLMSettings(model="omost", base_url=server.url))
    assert exc.value.answer == "```python\ncanvas = Canvas()\n"


def test_a_connection_closed_mid_answer_is_a_clear_error(serve):
    server = serve(stream(delta("```python\ncanvas = Canvas()\n"), b'data: {"choices": [{"delta": {"con'))
    res = generate(server, "-q")
    clean_failure(res, "closed", "before the answer was complete")


@pytest.mark.parametrize("reply", [
    lambda h: h.wfile.write(b"HELLO\r\n\r\n"),  # not HTTP
    lambda h: h.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),  # a bad chunk
    lambda h: h.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\ndata: {"),  # cut short
    lambda h: h.wfile.write(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n"),  # too many headers
])
def test_a_reply_that_is_not_http_is_a_clear_error(serve, reply):
    server = serve(reply)
    res = generate(server, "-q")
    clean_failure(res, server.url)


def test_a_reply_that_is_not_a_stream_is_a_clear_error(serve, tmp_path):
    server = serve(stream(b"<html>hello</html>", content_type="text/html"))
    clean_failure(generate(server, "-q"), "not a stream of server-sent events")
    server = serve(stream(b"\x1f\x8b\x08\x00garbage", content_type="text/event-stream"))
    clean_failure(generate(server, "-q"), server.url)
    # a server that answers in one JSON body, not streamed, is still understood
    whole = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": CLEAN}}]}).encode()
    server = serve(stream(whole, content_type="application/json"))
    res = generate(server, "-q", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output


def test_a_stream_labelled_json_is_still_read(serve, tmp_path):
    server = serve(stream(delta(CLEAN), DONE, content_type="application/json"))
    res = generate(server, "-q", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output


def test_lone_surrogates_from_a_server_are_replaced_not_a_crash(serve, tmp_path):
    answer = CLEAN.replace("A fierce battle", "A fierce \ud800 battle")
    server = serve(stream(delta(answer), DONE))
    res = generate(server, "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "A fierce \ufffd battle" in (tmp_path / "s.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("value", ["inf", "nan", "1e300", "0", "-1"])
def test_timeouts_that_are_not_a_number_of_seconds_are_usage_errors(serve, value):
    server = serve(stream(delta(CLEAN), DONE))
    res = generate(server, "-q", "--timeout", value)
    assert res.exit_code == 2 and "--timeout" in res.stderr and "Traceback" not in res.output, res.output


# --- 2. Ctrl-C while the model runs here, under the grammar -------------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    pytest.importorskip("xgrammar", reason="xgrammar is a dev dependency")
    return dev_model(tmp_path_factory, "tiny-llama")


@pytest.mark.slow
@pytest.mark.parametrize("presses", [1, 2, 3])
def test_ctrl_c_during_constrained_generation_stops_cleanly(tiny_llama, tmp_path, presses):
    # --context: the tiny Llama's small vocabulary spends ~9k tokens on the dragon conversation
    args = [sys.executable, "-m", "omostc.cli", "edit", str(REPO / "specs" / "dragon.yaml"), "make it red",
            "--model", str(tiny_llama), "--constrain", "--max-tokens", "2000", "--seed", "1", "--context", "32768",
            "-o", str(tmp_path / "out.yaml")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    seen = b""
    os.set_blocking(proc.stderr.fileno(), False)
    deadline = time.monotonic() + 120
    while b"```" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += proc.stderr.read() or b""
        time.sleep(0.01)
    assert b"```" in seen, seen
    for _ in range(presses):  # a person pressing Ctrl-C, maybe again while it stops
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    os.set_blocking(proc.stderr.fileno(), True)
    _, err = proc.communicate(timeout=60)
    stderr = (seen + err).decode("utf-8", "replace")
    assert proc.returncode not in (134, -6), stderr
    assert "terminate called" not in stderr and "Traceback" not in stderr, stderr
    assert "interrupted" in stderr, stderr


def test_a_model_that_fails_while_generating_is_a_clear_error(tiny_llama, monkeypatch):
    from omostc.llm import LLMError, SamplingOptions, TransformersChatBackend, new_conversation

    backend = TransformersChatBackend(str(tiny_llama), device_map="cpu", dtype="fp32")
    model, _ = backend._load()

    def boom(**kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(model, "generate", boom)
    outcome = []

    def consume():
        try:
            list(backend.stream(new_conversation("a cat"), SamplingOptions(max_tokens=20)))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    worker.join(30)  # not the streamer's 600 s wait for text that never comes
    assert outcome and isinstance(outcome[0], LLMError) and "CUDA out of memory" in str(outcome[0])


@pytest.mark.slow
def test_a_local_model_has_a_deadline_too(tiny_llama):
    started = time.perf_counter()
    # unconstrained, the random model writes until its 4,000 tokens are spent: far longer than 0.05 s
    res = run("generate", "a dragon", "--model", tiny_llama, "--no-constrain", "--max-tokens", 4000,
              "--timeout", 0.05, "-q")
    clean_failure(res, "within 0.05 s")
    assert time.perf_counter() - started < 60  # a hang guard, not a timing: the bound only catches a stall
