"""The LLM front against a real HTTP server on loopback that speaks OpenAI's streaming protocol."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from conftest import REPO, dev_model

from omostc import compile_canvas, load_spec
from omostc.cli import main
from omostc.spec.tables import system_prompt

CLEAN = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8")
EDITED = (REPO / "specs" / "src" / "dinosaur.md").read_text(encoding="utf-8")
TRUNCATED = CLEAN[: len(CLEAN) // 2]
INVALID = CLEAN.replace("HTML_web_color_name='firebrick'", "HTML_web_color_name=f'{red}'")


class ChatServer:
    """Answers each POST to /v1/chat/completions with the next scripted text, in small chunks."""

    def __init__(self, answers: list[str], status: int = 200):
        self.answers, self.requests, self.status = list(answers), [], status
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body})
                if server.status != 200:
                    self.send_response(server.status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "model not found"}')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                text = server.answers.pop(0)
                for i in range(0, len(text), 37):
                    chunk = {"choices": [{"index": 0, "delta": {"content": text[i:i + 37]}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        # shutdown() waits for serve_forever's next poll: 0.5 s by default, per server
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def chat():
    servers = []

    def start(answers, status=200):
        servers.append(ChatServer(answers, status))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    """Recovery files (omostc-answer-*.md) go to the current folder: not the repository's."""
    monkeypatch.chdir(tmp_path)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_generate_streams_compiles_and_records_the_conversation(chat, tmp_path):
    server = chat([CLEAN])
    out = tmp_path / "dragon.yaml"
    res = run("generate", "a dragon fighting warriors", "--base-url", server.url, "--model", "omost", "-o", out,
              "--seed", 7)
    assert res.exit_code == 0, res.output
    assert "canvas = Canvas()" in res.stderr  # streamed as it came
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    body = request["body"]
    assert body["stream"] is True and body["model"] == "omost" and body["seed"] == 7
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 0.9, 4096)
    messages = body["messages"]
    assert messages[0] == {"role": "system", "content": system_prompt()}
    assert system_prompt().encode() == (REPO / "omostc" / "data" / "system_prompt.txt").read_bytes()
    assert messages[1] == {"role": "user", "content": "a dragon fighting warriors"}
    scene = load_spec(out)
    assert scene.regions == compile_canvas(CLEAN).scene.regions
    assert scene.provenance.prompt == "a dragon fighting warriors" and scene.provenance.model == "omost"
    assert [m.role for m in scene.provenance.conversation] == ["user", "assistant"]
    assert scene.provenance.conversation[1].content == CLEAN


def test_edit_sends_the_stored_conversation_then_the_request(chat, tmp_path):
    server = chat([CLEAN, EDITED])
    first, second = tmp_path / "dragon.yaml", tmp_path / "dino.yaml"
    assert run("generate", "a dragon", "--base-url", server.url, "-o", first, "-q").exit_code == 0
    res = run("edit", first, "change the dragon to a dinosaur", "--base-url", server.url, "-o", second, "-q")
    assert res.exit_code == 0, res.output
    messages = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == system_prompt() and messages[2]["content"] == CLEAN
    assert messages[3]["content"] == "change the dragon to a dinosaur"
    assert "dinosaur" in load_spec(second).global_description.description


def test_edit_of_a_spec_without_a_conversation_sends_its_decompiled_canvas(chat, tmp_path):
    server = chat([EDITED])
    res = run("edit", REPO / "specs" / "tides-bbox.yaml", "make the moon red", "--base-url", server.url, "-q",
              "-o", tmp_path / "x.yaml")
    assert res.exit_code == 0, res.output
    messages = server.requests[0]["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "assistant", "user"]
    assistant = messages[1]["content"]
    assert assistant.startswith("```python\n# Initialize the canvas\ncanvas = Canvas()") and "bbox=[" in assistant
    assert compile_canvas(assistant).scene == replace(load_spec(REPO / "specs" / "tides-bbox.yaml"), provenance=None)


def test_retries_resample_until_an_answer_compiles(chat, tmp_path):
    server = chat([TRUNCATED, INVALID, CLEAN])
    res = run("generate", "a dragon", "--base-url", server.url, "--retries", "2", "--seed", "1", "-q",
              "-o", tmp_path / "s.yaml")
    assert res.exit_code == 0, res.output
    assert "attempt 3" in res.stderr
    seeds = [r["body"]["seed"] for r in server.requests]
    assert len(seeds) == 3 and len(set(seeds)) == 3


def test_an_answer_that_does_not_compile_is_a_located_error(chat, tmp_path):
    server = chat([TRUNCATED])
    res = run("generate", "a dragon", "--base-url", server.url, "-q", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "<answer 1>:" in res.stderr and "truncated" in res.stderr
    assert not (tmp_path / "s.yaml").exists()
    server = chat([INVALID])
    res = run("generate", "a dragon", "--base-url", server.url, "-q")
    assert res.exit_code == 1 and "f-string" in res.stderr


def test_server_errors_are_clear(chat):
    server = chat([], status=404)
    res = run("generate", "a dragon", "--base-url", server.url, "-q")
    assert res.exit_code == 1 and "HTTP 404" in res.stderr and "model not found" in res.stderr
    res = run("generate", "a dragon", "--base-url", "http://127.0.0.1:9/v1", "-q")
    assert res.exit_code == 1 and "cannot reach" in res.stderr


# --- the transformers path, on a tiny random Llama built offline ------------------------------

@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    return dev_model(tmp_path_factory, "tiny-llama")


def test_tiny_llama_loads_through_from_pretrained_and_gets_omosts_prompt(tiny_llama):
    from omostc.llm import TransformersChatBackend, edit_conversation, new_conversation

    backend = TransformersChatBackend(str(tiny_llama), device_map="cpu", dtype="fp32")
    ids = backend.prompt_ids(new_conversation("a dragon"))[0]
    text = backend._tokenizer.decode(ids)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + system_prompt()
                           + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\na dragon<|eot_id|>")
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    scene = load_spec(REPO / "specs" / "dragon.yaml")
    edit = backend._tokenizer.decode(backend.prompt_ids(edit_conversation(scene, "make it a dinosaur"))[0])
    roles = [part.split("<|end_header_id|>")[0] for part in edit.split("<|start_header_id|>")[1:]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]


def test_streaming_is_the_models_generation_and_stops_early(tiny_llama):
    import time

    import torch

    from omostc.llm import SamplingOptions, TransformersChatBackend, new_conversation

    backend = TransformersChatBackend(str(tiny_llama), device_map="cpu", dtype="fp32")
    messages = new_conversation("a cat")
    streamed = list(backend.stream(messages, SamplingOptions(temperature=0, max_tokens=24)))
    assert len(streamed) > 1
    ids = backend.prompt_ids(messages)
    greedy = backend._model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                                     pad_token_id=backend._tokenizer.eos_token_id)
    assert "".join(streamed) == backend._tokenizer.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True)
    again = list(backend.stream(messages, SamplingOptions(temperature=0.6, max_tokens=24, seed=3)))
    assert again == list(backend.stream(messages, SamplingOptions(temperature=0.6, max_tokens=24, seed=3)))
    stream = backend.stream(messages, SamplingOptions(temperature=0, max_tokens=4000))
    next(stream)
    started = time.perf_counter()
    stream.close()  # what Ctrl-C does to the stream: generation stops, well before 4000 tokens
    assert time.perf_counter() - started < 5


def test_interrupted_generation_keeps_the_complete_calls():
    from omostc.llm import generate_scene as generate
    from omostc.llm import new_conversation

    class Interrupted:
        model = "scripted"

        def stream(self, messages, sampling):
            cut = CLEAN.index("# Add a mighty dragon.")
            yield CLEAN[:cut]
            raise KeyboardInterrupt

    result = generate(Interrupted(), new_conversation("a dragon"))
    assert result.interrupted and len(result.scene.regions) == 1


def test_random_model_answers_fail_with_located_errors(tiny_llama, tmp_path):
    res = run("generate", "a dragon", "--model", tiny_llama, "--no-constrain", "--max-tokens", "40", "--seed", "1",
              "-q", "-o", tmp_path / "s.yaml")
    assert res.exit_code == 1 and "<answer 1>" in res.stderr and "Traceback" not in res.output


def test_quantised_model_without_bitsandbytes_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    from omostc.llm import LLMError, TransformersChatBackend

    (tmp_path / "config.json").write_text(json.dumps(
        {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(LLMError, match="quantised with bitsandbytes \\(4-bit\\)"):
        TransformersChatBackend(str(tmp_path)).count_tokens("x")


def test_long_conversations_are_trimmed_keeping_system_and_latest_canvas():
    from omostc.llm import Message, trim_conversation

    turns = [Message("system", "S" * 30)]
    for i in range(6):
        turns += [Message("user", f"u{i}" * 100), Message("assistant", f"a{i}" * 100)]
    turns.append(Message("user", "new request"))
    kept, dropped = trim_conversation(turns, count=len, limit=1000, reserve=200)
    assert dropped > 0 and kept[0].role == "system" and kept[-1].content == "new request"
    assert kept[-2].content == "a5" * 100 and sum(len(m.content) for m in kept) <= 800
    assert kept[1].role == "user"
    assert trim_conversation(turns, count=len, limit=10**6) == (turns, 0)


def test_chat_session_streams_compiles_retries_edits_undoes_saves_and_renders(chat, tmp_path, monkeypatch):
    server = chat([CLEAN, INVALID, EDITED])
    monkeypatch.chdir(tmp_path)
    script = "a dragon\n/retry\n/edit change the dragon to a dinosaur\n/undo\n/save first.yaml\n/render\n/quit\n"
    res = CliRunner().invoke(main, ["chat", "--base-url", server.url, "--seed", "5"], input=script)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "canvas = Canvas()" in out and "saved chat.yaml" in out
    assert "f-string" in out and "the answer did not compile" in out
    assert "undone" in out and "no scene yet" in out  # /undo removed the only compiled answer
    bodies = [r["body"] for r in server.requests]
    assert bodies[0]["messages"][1]["content"] == "a dragon"
    assert bodies[1]["messages"] == bodies[0]["messages"] and bodies[1]["seed"] != bodies[0]["seed"]  # retry
    assert [m["content"] for m in bodies[2]["messages"][1:]] == ["change the dragon to a dinosaur"]  # edit
    assert "dinosaur" in load_spec(tmp_path / "chat.yaml").global_description.description


def test_chat_renders_the_current_scene(chat, tmp_path, monkeypatch):
    server = chat([CLEAN])
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["chat", "--base-url", server.url, "-q"], input="a dragon\n/render\n/quit\n")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "renders" / "chat" / "12345.png").is_file()
    assert (tmp_path / "renders" / "manifest.jsonl").is_file()
