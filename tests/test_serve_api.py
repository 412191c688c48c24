"""Issue 16, ``omostc serve``'s JSON API (omostc/serve/API.md) through Starlette's test client:
compile, validate, scene -> YAML, save, snap, render (preview and tiny profiles), the chat stream
against a loopback fake OpenAI-compatible server, path confinement, Origin/Host and token checks;
and the command itself, started as a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from omostc.cli import main
from omostc.llm.api import LLMSettings

# the 'serve' extra (and httpx, Starlette's test client, from the 'dev' extra) may be missing
TestClient = pytest.importorskip("starlette.testclient", reason="omostc serve needs the 'serve' extra").TestClient
pytest.importorskip("httpx", reason="Starlette's test client needs httpx (the 'dev' extra)")
serve_app = pytest.importorskip("omostc.serve.app")
serve_layout = pytest.importorskip("omostc.serve.layout")
serve_renders = pytest.importorskip("omostc.serve.renders")
Guard = pytest.importorskip("omostc.serve.security").Guard
ServeConfig, create_app = serve_app.ServeConfig, serve_app.create_app
SNAP_TOLERANCE, snap = serve_layout.SNAP_TOLERANCE, serve_layout.snap

PORT = 8765
BASE = f"http://127.0.0.1:{PORT}"
DRAGON = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8")


def client(folder: Path, out: Path, *, token: str | None = None, host: str = "127.0.0.1",
           llm: LLMSettings | None = None):
    guard = Guard(host=host, port=PORT, token=token)
    app = create_app(ServeConfig(folder=folder, out_dir=out, guard=guard, llm=llm or LLMSettings()))
    return TestClient(app, base_url=f"http://{host}:{PORT}")


@pytest.fixture
def folder(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("dragon.yaml", "tides-bbox.yaml"):
        shutil.copy(REPO / "specs" / name, specs / name)
    return specs


@pytest.fixture
def api(folder, tmp_path):
    with client(folder, tmp_path / "renders") as c:
        yield c


def compiled(tmp_path, *args: str) -> str:
    """What ``omostc compile`` writes (from standard input, as the page's text has no file)."""
    result = CliRunner().invoke(main, ["compile", "-", *args], input=DRAGON)
    assert result.exit_code == 0, result.output
    return result.stdout


def as_browser_sends(data):
    """JSON through a browser: JSON.stringify writes 5.0 as 5."""
    return json.loads(re.sub(r"(\d)\.0\b", r"\1", json.dumps(data)))


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# --- the spec view -------------------------------------------------------------------------

def test_list_and_read_specs(api, folder):
    (folder / "sub").mkdir()
    shutil.copy(folder / "dragon.yaml", folder / "sub" / "again.yml")
    (folder / ".hidden.yaml").write_text("x", encoding="utf-8")
    assert api.get("/api/specs").json() == {"specs": ["dragon.yaml", "sub/again.yml", "tides-bbox.yaml"]}
    got = api.get("/api/specs/sub/again.yml").json()
    assert got["yaml"] == (folder / "dragon.yaml").read_text(encoding="utf-8")
    assert got["scene"]["global"]["color"] and got["diagnostics"] == []
    layout = got["layout"]
    assert (layout["width"], layout["height"], layout["grid"]) == (896, 1152, 90)
    assert all({"x", "y", "w", "h", "color", "order", "label"} <= set(r) for r in layout["regions"])
    assert api.get("/api/specs/missing.yaml").status_code == 404


def test_compile_gives_what_omostc_compile_writes(api, tmp_path):
    got = api.post("/api/compile", json={"code": DRAGON}).json()
    assert got["ok"] and got["yaml"] == compiled(tmp_path)
    assert got["scene"]["regions"] and got["layout"]["regions"]


def test_compile_errors_are_located(api):
    got = api.post("/api/compile", json={"code": "canvas = Canvas()\ncanvas.set_global_description(\n"}).json()
    assert got["ok"] is False and got["yaml"] is None
    first = got["diagnostics"][0]
    assert first["severity"] == "error" and first["line"] is not None and first["column"] is not None


def test_validate_locates_errors_with_suggestions(api, folder):
    text = (folder / "dragon.yaml").read_text(encoding="utf-8")
    bad = text.replace("area: a large horizontal area", "area: a large horizontl area", 1)
    assert bad != text
    got = api.post("/api/validate", json={"yaml": bad, "path": "dragon.yaml"}).json()
    assert got["ok"] is False and got["scene"] is None
    [d] = got["diagnostics"]
    line = next(i for i, s in enumerate(bad.splitlines(), 1) if "horizontl" in s)
    assert (d["file"], d["line"], d["suggestion"]) == ("dragon.yaml", line, "a large horizontal area")
    assert "horizontl" in d["excerpt"] and d["column"] > 1
    # the same diagnostic as the command
    (folder / "bad.yaml").write_text(bad, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(folder / "bad.yaml")])
    assert result.exit_code == 1 and f":{d['line']}:{d['column']}: error: {d['message']}" in result.output
    assert api.post("/api/validate", json={"yaml": text}).json()["ok"] is True


def test_scene_to_yaml_is_the_bytes_omostc_compile_writes(api, folder, tmp_path):
    target = folder / "from-code.yaml"
    compiled(tmp_path, "-o", str(target))
    written = target.read_text(encoding="utf-8")
    scene = as_browser_sends(api.get("/api/specs/from-code.yaml").json()["scene"])
    got = api.post("/api/scene-to-yaml", json={"scene": scene, "path": "from-code.yaml"}).json()
    assert got["ok"] and got["yaml"] == written
    # a stored conversation is kept, as literal blocks
    scene["provenance"] = {"prompt": "a dragon", "conversation": [{"role": "user", "content": "a dragon"},
                                                                  {"role": "assistant", "content": "line 1\nline 2\n"}]}
    got = api.post("/api/scene-to-yaml", json={"scene": scene}).json()
    assert "content: |" in got["yaml"] and "line 2" in got["yaml"]
    # an edit that breaks the schema: named, not saved anywhere
    scene["regions"][0]["area"] = "a huge area"
    bad = api.post("/api/scene-to-yaml", json={"scene": scene}).json()
    assert bad["ok"] is False and "regions[0].area" in bad["diagnostics"][0]["message"]


def test_layout_moves_with_an_edited_scene(api):
    scene = api.get("/api/specs/tides-bbox.yaml").json()["scene"]
    scene["regions"][0]["box"] = {"x": 1, "y": 2, "w": 3, "h": 4}
    region = api.post("/api/layout", json={"scene": scene}).json()["layout"]["regions"][0]
    assert (region["x"], region["y"], region["w"], region["h"]) == (1, 2, 3, 4)


# --- save ----------------------------------------------------------------------------------

def test_save_writes_atomically_inside_the_folder(api, folder):
    text = (folder / "dragon.yaml").read_text(encoding="utf-8").replace("distance_to_viewer: 1.0",
                                                                        "distance_to_viewer: 2.0")
    got = api.put("/api/specs/new/dragon2.yaml", json={"yaml": text})
    assert got.status_code == 200 and got.json()["path"] == "new/dragon2.yaml"
    assert (folder / "new" / "dragon2.yaml").read_text(encoding="utf-8") == text
    assert [p.name for p in (folder / "new").iterdir()] == ["dragon2.yaml"]  # no temporary file left
    assert api.get("/api/specs").json()["specs"][1] == "new/dragon2.yaml"


def test_save_refuses_an_invalid_spec_and_keeps_the_file(api, folder):
    before = (folder / "dragon.yaml").read_text(encoding="utf-8")
    got = api.put("/api/specs/dragon.yaml", json={"yaml": before.replace("version: 1", "version: 7")})
    assert got.status_code == 422 and got.json()["diagnostics"][0]["line"] is not None
    assert (folder / "dragon.yaml").read_text(encoding="utf-8") == before


@pytest.mark.parametrize("path", ["../outside.yaml", "sub/../../outside.yaml", "%2e%2e/outside.yaml",
                                  "/tmp/outside.yaml", "%2Ftmp%2Foutside.yaml", "a%00b.yaml", "..%5Coutside.yaml",
                                  "notes.txt", "%2E/dragon.yaml", "sub//x.yaml", "C:%5Cx.yaml"])
def test_paths_outside_the_folder_are_refused(api, folder, path):
    text = (folder / "dragon.yaml").read_text(encoding="utf-8")
    before = sorted(p.name for p in folder.parent.iterdir())
    for response in (api.put(f"/api/specs/{path}", json={"yaml": text}), api.get(f"/api/specs/{path}")):
        assert response.status_code in (400, 404), (path, response.text)
    assert sorted(p.name for p in folder.parent.iterdir()) == before
    assert not Path("/tmp/outside.yaml").exists()


def test_hidden_and_unreadable_files(api, folder):
    (folder / ".secret").mkdir()
    shutil.copy(folder / "dragon.yaml", folder / ".secret" / "x.yaml")
    assert api.get("/api/specs/.secret/x.yaml").status_code == 400
    (folder / "latin1.yaml").write_bytes("version: 1\nglobal: caf\xe9\n".encode("latin-1"))
    got = api.get("/api/specs/latin1.yaml").json()  # as `omostc validate` says it, located
    assert got["scene"] is None and "UTF-8" in got["diagnostics"][0]["message"]


def test_request_bodies_are_bounded(api):
    big = b'{"yaml": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    got = api.post("/api/validate", content=big, headers={"Content-Type": "application/json"})
    assert got.status_code == 413
    assert api.post("/api/validate", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.post("/api/validate", json=[1]).status_code == 400
    deep = b"[" * 100_000 + b"]" * 100_000
    assert api.post("/api/validate", content=deep, headers={"Content-Type": "application/json"}).status_code == 400


def test_symlinks_out_of_the_folder_are_refused(api, folder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(folder / "dragon.yaml", outside / "secret.yaml")
    (folder / "link.yaml").symlink_to(outside / "secret.yaml")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    text = (folder / "dragon.yaml").read_text(encoding="utf-8")
    for path in ("link.yaml", "linked/secret.yaml", "linked/new.yaml"):
        assert api.get(f"/api/specs/{path}").status_code == 400
        assert api.put(f"/api/specs/{path}", json={"yaml": text + "\n"}).status_code == 400
    assert (outside / "secret.yaml").read_text(encoding="utf-8") == text and not (outside / "new.yaml").exists()
    assert "link.yaml" not in api.get("/api/specs").json()["specs"]
    # a symlink that stays inside is an ordinary path
    (folder / "alias.yaml").symlink_to(folder / "dragon.yaml")
    assert api.get("/api/specs/alias.yaml").status_code == 200


# --- layout vocabulary ---------------------------------------------------------------------

def test_vocabulary_lists_every_allowed_value(api):
    v = api.get("/api/vocabulary").json()
    assert v["grid"] == 90 and v["snap_tolerance"] == SNAP_TOLERANCE
    assert len(v["locations"]) == len(v["offsets"]) == len(v["areas"]) == 9 and len(v["colors"]) == 149
    fields = {f["name"]: f for f in v["region_fields"]}
    assert fields["area"]["choices"] == list(v["areas"]) and fields["color"]["choices"] == list(v["colors"])
    assert {"description", "distance_to_viewer", "box"} <= set(fields) and v["global_fields"]


def test_snap_to_the_vocabulary_within_the_tolerance(api):
    exact = api.post("/api/snap", json={"x": 20, "y": 5, "w": 50, "h": 80}).json()
    assert exact == {"snapped": True, "location": "in the center", "offset": "no offset",
                     "area": "a medium-sized vertical area", "box": {"x": 20, "y": 5, "w": 50, "h": 80}}
    near = api.post("/api/snap", json={"x": 22.4, "y": 3, "w": 47, "h": 83}).json()
    assert near["snapped"] and near["area"] == "a medium-sized vertical area"
    off = api.post("/api/snap", json={"x": 24, "y": 5, "w": 50, "h": 80}).json()  # left edge 4 cells off
    assert off == {"snapped": False, "box": {"x": 24, "y": 5, "w": 50, "h": 80}}
    clamped = api.post("/api/snap", json={"x": -5, "y": 88.7, "w": 200, "h": 0.1}).json()
    assert clamped == {"snapped": False, "box": {"x": 0, "y": 89, "w": 90, "h": 1}}
    assert api.post("/api/snap", json={"x": "a", "y": 0, "w": 1, "h": 1}).status_code == 400


def test_every_vocabulary_box_snaps_to_a_vocabulary_entry_with_that_box():
    for _, _, _, rect in serve_layout._candidates():
        got = snap(rect.x, rect.y, rect.w, rect.h)
        assert got["snapped"] and got["box"] == rect.to_dict()


# --- render --------------------------------------------------------------------------------

def render(api, **body) -> list[tuple[str, dict]]:
    started = api.post("/api/render", json=body)
    assert started.status_code == 200, started.text
    with api.stream("GET", f"/api/render/{started.json()['job']}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.read().decode())


def test_render_on_the_preview_profile_streams_to_an_image(api, tmp_path):
    events = render(api, path="tides-bbox.yaml", seed=3)
    kind, done = events[-1]
    assert kind == "done" and done["path"] == "tides-bbox/3.png" and done["profile"] == "preview"
    assert done["settings"]["seed"] == 3 and done["settings"]["width"] == 896
    png = api.get(done["image"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "renders" / "tides-bbox" / "3.png").is_file()
    rows = api.get("/api/renders?path=tides-bbox.yaml").json()["renders"]
    assert [(r["seed"], r["status"], r["image"]) for r in rows] == [(3, "rendered", done["image"])]
    again = render(api, path="tides-bbox.yaml", seed=3)[-1][1]  # incremental, as omostc render
    assert again["status"] == "skipped"


def test_render_unsaved_text_under_the_spec_name(api, folder):
    text = (folder / "dragon.yaml").read_text(encoding="utf-8").replace("color: ", "color: ", 1)
    kind, done = render(api, yaml=text, path="dragon.yaml", seed=1)[-1]
    assert kind == "done" and done["path"] == "dragon/1.png"


def test_render_refuses_bad_input_before_starting(api, folder):
    bad = api.post("/api/render", json={"yaml": "version: 1\n"})
    assert bad.status_code == 422 and bad.json()["diagnostics"][0]["line"] == 1
    unknown = api.post("/api/render", json={"path": "dragon.yaml", "profile": "previwe"})
    assert unknown.status_code == 422 and "did you mean 'preview'" in unknown.json()["error"]
    for profile in ("/etc/passwd.yaml", "../x.yaml"):
        assert api.post("/api/render", json={"path": "dragon.yaml", "profile": profile}).status_code == 400
    assert api.post("/api/render", json={"path": "../x.yaml"}).status_code == 400
    assert api.post("/api/render", json={"path": "dragon.yaml", "seed": -1}).status_code == 400
    assert api.get("/api/render/nope/events").status_code == 404


def test_render_errors_arrive_as_events(folder, tmp_path):
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    with client(folder, tmp_path / "not-a-folder") as c:
        kind, data = render(c, path="dragon.yaml")[-1]
    assert kind == "error" and "cannot write" in data["message"]


def test_waiting_renders_are_bounded(folder, tmp_path):
    renders = serve_renders.Renders(tmp_path / "out")
    with renders.one_at_a_time:  # a render in progress: the others wait
        for _ in range(serve_renders.MAX_WAITING):
            renders.start(folder / "dragon.yaml", None, "", "preview", 1)
        with pytest.raises(serve_renders.Busy):
            renders.start(folder / "dragon.yaml", None, "", "preview", 1)


@pytest.mark.slow
def test_render_on_the_tiny_profile_reports_progress(api):
    events = render(api, path="tides-bbox.yaml", profile="tiny", seed=5)
    progress = [d for k, d in events if k == "progress"]
    assert progress and progress[-1]["step"] == progress[-1]["steps"]
    kind, done = events[-1]
    assert kind == "done" and done["settings"]["width"] == 128 and done["profile"] == "tiny"
    assert api.get(done["image"]).content[:4] == b"\x89PNG"


def test_images_only_from_the_output_folder(api, tmp_path):
    render(api, path="tides-bbox.yaml", seed=2)
    (tmp_path / "secret.png").write_bytes(b"\x89PNG secret")
    (tmp_path / "renders" / "tides-bbox" / "link.png").symlink_to(tmp_path / "secret.png")
    for path in ("../secret.png", "/etc/passwd", "tides-bbox/link.png", "manifest.jsonl", "tides-bbox/2.png%00"):
        assert api.get(f"/api/image?path={path}").status_code in (400, 404), path
    assert api.get("/api/image?path=tides-bbox/2.png").status_code == 200


# --- chat ----------------------------------------------------------------------------------

class FakeLLM:
    """A loopback OpenAI-compatible server that streams the given answers in order."""

    def __init__(self, *answers: str):
        self.answers, self.requests = list(answers), []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                owner.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                answer = owner.answers.pop(0)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(answer), 200):
                    chunk = {"choices": [{"index": 0, "delta": {"content": answer[i:i + 200]}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def llm():
    servers = []

    def start(*answers):
        servers.append(FakeLLM(*answers))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def chat(c, **body) -> list[tuple[str, dict]]:
    with c.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        return sse_events(response.read().decode())


def test_chat_streams_tokens_then_the_compiled_scene(llm, folder, tmp_path):
    server = llm(DRAGON, DRAGON)
    settings = LLMSettings(model="omost-fake", base_url=server.url)
    with client(folder, tmp_path / "renders", llm=settings) as c:
        events = chat(c, messages=[], text="a dragon", path="chat.yaml")
        tokens = [d["text"] for k, d in events if k == "token"]
        assert len(tokens) > 1 and "".join(tokens) == DRAGON
        kind, done = events[-1]
        assert kind == "done" and done["answer"] == DRAGON
        assert done["messages"] == [{"role": "user", "content": "a dragon"}, {"role": "assistant", "content": DRAGON}]
        assert done["scene"]["provenance"]["conversation"] == done["messages"] and done["layout"]["regions"]
        assert done["yaml"] == c.post("/api/scene-to-yaml", json={"scene": done["scene"], "path": "chat.yaml"}
                                      ).json()["yaml"]
        # the system prompt is the server's, as `omostc chat` sends it; retry: the same turn, a new seed
        assert server.requests[0]["messages"][0]["role"] == "system"
        events = chat(c, messages=[], text="a dragon", retry=True)
        assert events[-1][0] == "done" and server.requests[1]["messages"][1:] == server.requests[0]["messages"][1:]
        assert server.requests[1].get("seed") != server.requests[0].get("seed")


def test_chat_answer_that_does_not_compile_is_located_and_kept(llm, folder, tmp_path):
    server = llm("```python\ncanvas = Canvas()\ncanvas.add_local_description(location='nowhere')\n```")
    with client(folder, tmp_path / "r", llm=LLMSettings(model="omost-fake", base_url=server.url)) as c:
        earlier = [{"role": "user", "content": "a cat"}, {"role": "assistant", "content": DRAGON}]
        kind, error = chat(c, messages=earlier, text="make it a dog")[-1]
    assert kind == "error" and "did not compile" in error["message"]
    assert error["diagnostics"][0]["line"] is not None and error["diagnostics"][0]["file"] == "<answer 1>"
    assert error["messages"][:2] == earlier and error["messages"][2] == {"role": "user", "content": "make it a dog"}
    assert error["messages"][3]["role"] == "assistant" and error["answer"]
    assert [m["role"] for m in server.requests[0]["messages"]] == ["system", "user", "assistant", "user"]


def test_chat_continues_from_a_hand_edited_scene(llm, folder, tmp_path):
    server = llm(DRAGON)
    with client(folder, tmp_path / "r", llm=LLMSettings(model="omost-fake", base_url=server.url)) as c:
        scene = c.get("/api/specs/tides-bbox.yaml").json()["scene"]
        kind, done = chat(c, messages=[], text="add a moon", scene=scene)[-1]
    assert kind == "done"
    sent = server.requests[0]["messages"]
    assert sent[-1] == {"role": "user", "content": "add a moon"} and "Canvas()" in sent[-2]["content"]
    # the page keeps what the model saw: the scene's canvas as the first answer, then this turn
    assert [m["role"] for m in done["messages"]] == ["assistant", "user", "assistant"]
    assert done["messages"] == sent[1:] + [{"role": "assistant", "content": DRAGON}]
    assert done["scene"]["provenance"]["conversation"] == done["messages"]


def test_chat_sends_layout_edits_as_the_last_answer(llm, folder, tmp_path):
    server = llm(DRAGON, DRAGON)
    with client(folder, tmp_path / "r", llm=LLMSettings(model="omost-fake", base_url=server.url)) as c:
        done = chat(c, messages=[], text="a dragon")[-1][1]
        unchanged = chat(c, messages=done["messages"], text="more fire", scene=done["scene"])[-1][1]
        edited = done["scene"]
        edited["regions"][0]["box"] = {"x": 0, "y": 0, "w": 10, "h": 10}  # dragged on the page
        for key in ("location", "offset", "area"):
            edited["regions"][0].pop(key, None)
        server.answers.append(DRAGON)
        chat(c, messages=done["messages"], text="more fire", scene=edited)
    assert unchanged["messages"][:2] == done["messages"] and server.requests[1]["messages"][2]["content"] == DRAGON
    last_answer = server.requests[2]["messages"][-2]
    assert last_answer["role"] == "assistant" and "bbox" not in DRAGON
    assert "bbox=[0, 0, 10, 10]" in last_answer["content"]  # the dragged box, as Canvas code


def test_chat_keeps_the_whole_conversation_when_the_model_sees_part(llm, folder, tmp_path):
    """A conversation over the model's context reaches the model trimmed, as `omostc chat` trims
    it, but the page gets back every turn it sent (and the scene stores them), with a warning."""
    server = llm(DRAGON, DRAGON)
    with client(folder, tmp_path / "r", llm=LLMSettings(model="omost-fake", base_url=server.url)) as c:
        scene = c.get("/api/specs/dragon.yaml").json()["scene"]  # a long canvas: two fill the context
        first = chat(c, messages=[], text="a dragon", scene=scene)[-1][1]
        # its prompt and canvas (the worked example's own exchange: kept, this model is not shown one)
        assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant"]
        kind, done = chat(c, messages=first["messages"], text="more fire")[-1]
    assert kind == "done"
    assert done["messages"] == first["messages"] + [{"role": "user", "content": "more fire"},
                                                    {"role": "assistant", "content": DRAGON}]
    assert done["scene"]["provenance"]["conversation"] == done["messages"]
    sent = server.requests[1]["messages"]
    assert len(sent) < 1 + len(first["messages"]) + 1  # trimmed for the model's 8k context
    assert any("oldest left out" in d["message"] for d in done["diagnostics"])


def test_info_never_shows_the_servers_password(folder, tmp_path):
    settings = LLMSettings(model="m", base_url="http://me:s3cret@127.0.0.1:8080/v1", api_key="key")
    with client(folder, tmp_path / "r", llm=settings) as c:
        text = c.get("/api/info").text
    assert "s3cret" not in text and "key" not in json.loads(text)["llm"].values()
    assert json.loads(text)["llm"]["base_url"] == "http://127.0.0.1:8080/v1"


def test_chat_server_down_is_an_error_event(folder, tmp_path):
    settings = LLMSettings(model="omost-fake", base_url="http://127.0.0.1:9/v1", timeout=2)
    with client(folder, tmp_path / "r", llm=settings) as c:
        kind, error = chat(c, messages=[], text="a dragon")[-1]
    assert kind == "error" and error["messages"] == [] and error["message"]


def test_chat_refuses_malformed_conversations(api):
    system = [{"role": "system", "content": "x"}]  # the system prompt is the server's
    assert api.post("/api/chat", json={"messages": system, "text": "a"}).status_code == 400
    assert api.post("/api/chat", json={"messages": [], "text": 3}).status_code == 400
    assert api.post("/api/chat", json={"messages": [], "text": " "}).status_code == 400


# --- who may ask ---------------------------------------------------------------------------

def test_other_origins_and_host_names_are_refused(api):
    assert api.get("/api/specs").status_code == 200
    assert api.get("/api/specs", headers={"Origin": BASE}).status_code == 200
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": f"http://localhost:{PORT}"},
                    {"Host": "evil.example"}, {"Host": f"rebound.example:{PORT}"}, {"Host": "127.0.0.1:9999"}):
        got = api.get("/api/specs", headers=headers)
        assert got.status_code == 403 and "refused" in got.json()["error"], headers
    # <img src> and <script src> from another page send no Origin; browsers still say where they come from
    for site in ("cross-site", "same-site"):  # same-site: another port of this host
        assert api.get("/api/image?path=x.png", headers={"Sec-Fetch-Site": site}).status_code == 403
    for site in ("same-origin", "none"):
        assert api.get("/api/specs", headers={"Sec-Fetch-Site": site}).status_code == 200
    # a cross-site form posts text/plain or form data: refused before it is read
    form = api.post("/api/validate", content=b'{"yaml": "x"}', headers={"Content-Type": "text/plain"})
    assert form.status_code == 403
    assert api.put("/api/specs/dragon.yaml", content=b"yaml=x",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 403


def test_loopback_names_reach_a_loopback_server(folder, tmp_path):
    with client(folder, tmp_path / "r") as c:
        for host in (f"localhost:{PORT}", f"[::1]:{PORT}"):
            assert c.get("/api/specs", headers={"Host": host}).status_code == 200


def test_host_names_by_binding():
    assert Guard("127.0.0.1", 80).host_ok("127.0.0.1") and Guard("127.0.0.1", 80).host_ok("localhost:80")
    assert not Guard("127.0.0.1", 8000).host_ok("127.0.0.1") and not Guard("127.0.0.1", 80).host_ok("evil.example")
    assert Guard("192.0.2.7", 8000, token="t").host_ok("192.0.2.7:8000")
    assert not Guard("192.0.2.7", 8000, token="t").host_ok("evil.example:8000")
    assert Guard("0.0.0.0", 8000, token="t").host_ok("myhost.lan:8000")  # any name reaches it: the token guards it


def test_a_token_is_needed_when_set(folder, tmp_path):
    with client(folder, tmp_path / "r", token="s3cret", host="192.0.2.7") as c:
        assert c.get("/api/specs").status_code == 403
        assert c.get("/").status_code == 403
        assert c.get("/api/specs", headers={"X-Omostc-Token": "wrong"}).status_code == 403
        assert c.get("/api/specs", headers={"X-Omostc-Token": "s3cret"}).status_code == 200
        page = c.get("/?token=s3cret")  # the first page load: the cookie carries it on
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert page.headers["set-cookie"].startswith(f"omostc_token_{PORT}=s3cret;")  # one per server
        assert c.get("/api/specs").status_code == 200
        c.cookies.clear()
        assert c.get("/api/specs").status_code == 403


def test_the_page_and_its_files_are_served(api):
    page = api.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert api.get("/static/app.js").status_code == 200
    assert api.get("/static/../app.py").status_code == 404
    info = api.get("/api/info").json()
    assert info["profiles_default"] == "preview" and info["token_required"] is False
    profiles = api.get("/api/profiles").json()
    assert profiles["default"] == "preview" and "tiny" in [p["name"] for p in profiles["profiles"]]


# --- the command ---------------------------------------------------------------------------

def test_serve_help_has_the_chat_flags_and_the_security_model():
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--host", "--port", "--no-browser", "--out", "--base-url", "--model", "--temperature", "--timeout"):
        assert flag in result.output
    assert "--output" not in result.output and "token" in result.output


def test_serve_says_which_extra_is_missing(monkeypatch, folder):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    result = CliRunner().invoke(main, ["serve", str(folder), "--no-browser"])
    assert result.exit_code == 1 and "pip install 'omostc[serve]'" in result.output and "Traceback" not in result.output


def _start(folder: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "omostc", "serve", str(folder), "--no-browser", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=folder.parent)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    return proc, url


def _get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_serve_command_serves_the_page_and_the_specs(folder):
    proc, url = _start(folder)
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url), url
        status, body = _get(url)
        assert status == 200 and b"<html" in body.lower()
        status, body = _get(url + "api/specs")
        assert status == 200 and json.loads(body) == {"specs": ["dragon.yaml", "tides-bbox.yaml"]}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_beyond_loopback_needs_the_printed_token(folder):
    proc, url = _start(folder, "--host", "0.0.0.0")
    try:
        found = re.fullmatch(r"http://[^/]+:(\d+)/\?token=([\w-]{20,})", url)
        assert found, url
        local = f"http://127.0.0.1:{found.group(1)}/"
        assert _get(local + "api/specs")[0] == 403
        assert _get(local + "api/specs", {"X-Omostc-Token": found.group(2)})[0] == 200
        assert _get(f"{local}?token={found.group(2)}")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
