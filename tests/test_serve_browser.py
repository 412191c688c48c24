"""The page of ``omostc serve`` in a real browser: Debian's chromium, headless, driven by
Playwright with the system browser (no browser download).

Load a spec, drag a box with the mouse, see the YAML change, save, and check the saved file
compiles to the dragged layout; resize a box onto Omost's vocabulary and see it snap; type a
mistake into the YAML and see it located; render on the preview profile and see the image.

``OMOSTC_SCREENSHOT=1`` also writes the app's screenshot shown in the README (docs/serve.png);
normal runs leave the repository alone. ``OMOSTC_CHROMIUM`` names another browser binary.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SCREENSHOT = ROOT / "docs" / "serve.png"
DRAGON = (SPECS / "src" / "dragon.md").read_text("utf-8")
BAD = "Here you go:\n```python\ncanvas = Canvas()\ncanvas.add_local_description(location='nowhere')\n```\n"

pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    named = os.environ.get("OMOSTC_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _requirements() -> tuple[str, object]:
    """The browser binary and Playwright's sync API, or a skip saying which is missing."""
    for module, extra in (("starlette", "serve"), ("uvicorn", "serve")):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"omostc serve needs {module} (pip install 'omostc[{extra}]')")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("no Playwright: pip install 'omostc[dev]' (playwright, driven with the system browser)")
    browser = _chromium()
    if browser is None and os.environ.get("OMOSTC_CHROMIUM"):
        pytest.skip(f"OMOSTC_CHROMIUM={os.environ['OMOSTC_CHROMIUM']} is not a file")
    if browser is None:
        pytest.skip("no chromium browser: apt-get install chromium (Debian), or set OMOSTC_CHROMIUM to a binary")
    return browser, sync_api


class FakeLLM:
    """A loopback OpenAI-compatible server streaming its queued answers (then DRAGON) in small chunks."""

    def __init__(self) -> None:
        self.answers: list[str] = []
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                owner.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                answer = owner.answers.pop(0) if owner.answers else DRAGON
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(0, len(answer), 120):
                    chunk = {"choices": [{"index": 0, "delta": {"content": answer[i:i + 120]}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM()
    yield server
    server.close()


@contextmanager
def _serve(folder: Path, out: Path, *flags: str) -> Iterator[str]:
    """Run `omostc serve FOLDER --no-browser --port 0 --out OUT FLAGS...`; yield the URL it prints."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "omostc", "serve", str(folder), "--no-browser", "--port", "0", "--out", str(out),
         *flags], cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)  # the server ended

    threading.Thread(target=pump, daemon=True).start()
    url = None
    try:
        while url is None:
            try:
                line = lines.get(timeout=30)
            except queue.Empty:
                line = None
            if line is None:
                break
            found = re.search(r"http://\S+", line)
            if found:
                url = found.group(0).rstrip(".,)")
        if url is None:
            pytest.fail("omostc serve printed no URL:\n" + "".join(log))
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _specs(base: Path) -> tuple[Path, Path]:
    folder = base / "specs"
    folder.mkdir()
    for name in ("tides-bbox.yaml", "dragon.yaml", "cat-in-room.yaml"):
        shutil.copy(SPECS / name, folder / name)
    return folder, base / "renders"


@pytest.fixture(scope="module")
def served(tmp_path_factory, llm) -> Iterator[tuple[str, Path, Path]]:
    """`omostc serve DIR --no-browser --port 0` on a copy of some specs, chatting with the fake
    LLM: (url, DIR, OUT)."""
    _requirements()
    folder, out = _specs(tmp_path_factory.mktemp("serve"))
    with _serve(folder, out, "--base-url", llm.url, "--model", "omost-fake") as url:
        yield url, folder, out


@pytest.fixture(scope="module")
def browser():
    executable, sync_api = _requirements()
    with sync_api.sync_playwright() as p:  # type: ignore[attr-defined]
        launched = p.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, served):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, device_scale_factor=1)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.goto(served[0])
    tab.wait_for_selector("body[data-ready='true']", timeout=20_000)
    yield tab
    context.close()
    assert not problems, "\n".join(problems)


def _open(page, name: str) -> None:
    page.locator(f"[data-testid='file-item'][data-path='{name}']").click()
    page.wait_for_function(f"document.querySelector(\"[data-testid='current-file']\").textContent === '{name}'")
    page.wait_for_selector("[data-testid='region-box-0']")


def _drag(page, locator, cells_x: int, cells_y: int) -> None:
    """Press on an element's centre and move the mouse by whole grid cells, then release."""
    svg = page.get_by_test_id("layout-svg").bounding_box()
    target = locator.bounding_box()
    cell_w, cell_h = svg["width"] / 90, svg["height"] / 90
    x, y = target["x"] + target["width"] / 2, target["y"] + target["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + cells_x * cell_w / 2, y + cells_y * cell_h / 2, steps=4)
    page.mouse.move(x + cells_x * cell_w, y + cells_y * cell_h, steps=4)
    page.mouse.up()


def _screenshot(page) -> None:
    """The README's picture of the app (only when asked: OMOSTC_SCREENSHOT=1)."""
    if os.environ.get("OMOSTC_SCREENSHOT") != "1":
        return
    page.get_by_test_id("region-item-1").click()
    page.get_by_test_id("render-start").click()
    page.wait_for_function("document.querySelector(\"[data-testid='render-image']\").naturalWidth > 0",
                           timeout=60_000)
    page.get_by_test_id("spec-yaml").evaluate("t => { t.scrollTop = 0; }")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def _yaml(page) -> str:
    return page.get_by_test_id("spec-yaml").input_value()


def _wait_yaml(page, pattern: str) -> str:
    page.wait_for_function(
        "p => new RegExp(p).test(document.querySelector(\"[data-testid='spec-yaml']\").value)",
        arg=pattern, timeout=10_000)
    return _yaml(page)


def test_drag_save_render(page, served):
    from omostc import load_spec
    from omostc.spec.model import Box, region_rect

    url, folder, out = served
    _open(page, "tides-bbox.yaml")
    assert "x: 65" in _yaml(page)
    # the layout is drawn at the image's aspect ratio (896 x 1152 by default)
    svg = page.get_by_test_id("layout-svg").bounding_box()
    assert svg["width"] / svg["height"] == pytest.approx(896 / 1152, rel=0.02)

    # drag the moon (box 65, 40, 15 x 15) left 35 and down 20 cells: it stays a free box
    _drag(page, page.locator("[data-testid='region-box-1'] rect.box"), -35, 20)
    text = _wait_yaml(page, r"box:\n    x: 30\n    y: 60\n    w: 15\n    h: 15")
    assert "x: 65" not in text
    assert page.get_by_test_id("dirty").is_visible()

    # resize the earth (box 30, 30, 30 x 30) from its corners to 20, 20, 50 x 50: that is
    # "in the center", "no offset", "a small square area", so it snaps to the vocabulary
    page.locator("[data-testid='region-box-0'] rect.box").click()
    _drag(page, page.get_by_test_id("handle-nw"), -10, -10)
    _wait_yaml(page, r"x: 20\n    y: 20\n    w: 40")
    _drag(page, page.get_by_test_id("handle-se"), 10, 10)
    text = _wait_yaml(page, r"location: in the center\n  offset: no offset\n  area: a small square area")
    assert page.get_by_test_id("field-location").input_value() == "in the center"

    page.get_by_test_id("save").click()
    page.wait_for_function("document.querySelector(\"[data-testid='dirty']\").hidden")
    saved = folder / "tides-bbox.yaml"
    assert saved.read_text("utf-8") == _yaml(page)
    scene = load_spec(saved)
    assert scene.regions[1].box == Box(x=30, y=60, w=15, h=15)
    assert scene.regions[0].box is None and scene.regions[0].area == "a small square area"
    assert region_rect(scene.regions[0]) == (20, 70, 20, 70)  # top, bottom, left, right
    assert scene.regions[2].box == Box(x=0, y=0, w=30, h=30)  # untouched

    # render on the preview profile (the default) and see the image with its settings
    assert page.get_by_test_id("render-profile").input_value() == "preview"
    page.get_by_test_id("render-start").click()
    image = page.get_by_test_id("render-image")
    image.wait_for(state="visible", timeout=60_000)
    page.wait_for_function("document.querySelector(\"[data-testid='render-image']\").naturalWidth > 0")
    natural = page.evaluate("() => { const i = document.querySelector(\"[data-testid='render-image']\");"
                            " return [i.naturalWidth, i.naturalHeight]; }")
    assert natural[0] * 1152 == natural[1] * 896
    assert "seed" in page.get_by_test_id("render-settings").inner_text()
    assert list(out.rglob("*.png")), "the render is written in the batch runner's output folder"
    page.get_by_test_id("render-past-item").first.wait_for(timeout=10_000)


def test_typing_yaml_shows_located_errors_and_redraws(page, served):
    _open(page, "dragon.yaml")
    text = _yaml(page)
    line = text.splitlines().index("  color: firebrick") + 1
    editor = page.get_by_test_id("spec-yaml")
    editor.fill(text.replace("  color: firebrick", "  color: firebrik"))
    error = page.get_by_test_id("spec-error").first
    error.wait_for(timeout=10_000)
    assert error.get_attribute("data-line") == str(line)
    assert "firebrick" in error.inner_text()  # the suggestion
    assert page.get_by_test_id("spec-gutter-mark").all_inner_texts() == [str(line)]  # marked at its line
    assert page.get_by_test_id("save").is_disabled()
    # fixed, and moved by typing: the layout follows the text
    editor.fill(text.replace("location: in the center\n  offset: no offset\n  area: a large square area",
                             "box:\n    x: 5\n    y: 5\n    w: 20\n    h: 20", 1))
    page.wait_for_function("document.querySelectorAll(\"[data-testid='spec-error']\").length === 0")
    dragon = page.locator("[data-testid='region-box-1'] rect.box")
    svg = page.get_by_test_id("layout-svg").bounding_box()
    page.wait_for_function(
        "() => { const r = document.querySelector(\"[data-testid='region-box-1'] rect.box\");"
        " return Math.abs(r.width.baseVal.value - 20 * 896 / 90) < 1; }")
    assert dragon.bounding_box()["x"] == pytest.approx(svg["x"] + 5 * svg["width"] / 90, abs=2)


def test_region_form_list_add_delete(page):
    _open(page, "cat-in-room.yaml")
    original = _yaml(page)
    page.get_by_test_id("region-item-0").click()
    details = page.get_by_test_id("field-detailed_descriptions").input_value()
    assert "\n" in details and details.splitlines()[0] in original  # one sub-prompt a line
    # the allowed values are the form's choices
    options = page.get_by_test_id("field-area").locator("option").all_inner_texts()
    assert "a small square area" in options and "— free box —" in options
    page.get_by_test_id("field-color").select_option("teal")
    text = _wait_yaml(page, r"color: teal")
    assert text.count("color: teal") == 1
    # the whole image's fields are a form too
    page.get_by_test_id("region-item-global").click()
    page.get_by_test_id("field-color").select_option("navy")
    assert _wait_yaml(page, r"global:\n(  .*\n)*  color: navy\n").count("color: teal") == 1
    # add a region (drawn and listed), then delete it again
    count = page.locator("[data-testid^='region-box-']").count()
    page.get_by_test_id("region-add").click()
    page.get_by_test_id(f"region-box-{count}").wait_for()
    _wait_yaml(page, r"description: A new region\.")
    page.get_by_test_id(f"region-delete-{count}").click()
    page.wait_for_function(f"!document.querySelector(\"[data-testid='region-box-{count}']\")")
    assert "A new region." not in _wait_yaml(page, r"color: teal")
    # reorder: the first region moves down, and the YAML follows
    page.get_by_test_id("region-item-0").click()
    first = page.get_by_test_id("field-description").input_value()
    page.get_by_test_id("region-down-0").click()
    page.wait_for_function(
        "d => document.querySelector(\"[data-testid='spec-yaml']\").value.split('regions:')[1]"
        ".split('description: ')[1].split('\\n')[0] !== d", arg=first)


def test_chat_streams_compiles_retries_and_undoes(page, served, llm):
    _open(page, "cat-in-room.yaml")
    original = _yaml(page)
    page.get_by_test_id("chat-text").fill("a dragon fighting warriors")
    page.get_by_test_id("chat-send").click()
    text = _wait_yaml(page, r"description: A fierce battle between warriors and a dragon\.")
    assert page.get_by_test_id("chat-assistant").last.locator(".line").first.text_content() == DRAGON.splitlines()[0]
    assert "conversation:" in text  # the scene keeps its conversation
    # the first answer (the server may also show the hand-edited scene as an earlier turn)
    answers = page.get_by_test_id("chat-assistant").count()
    _screenshot(page)
    assert page.get_by_test_id("dirty").is_visible()
    # a box moved by hand reaches the model: the edited scene stands in for its last answer
    page.get_by_test_id("region-item-1").click()
    page.locator("body").press("ArrowLeft")
    text = _wait_yaml(page, r"box:\n    x: 9\n    y: 10\n    w: 70\n    h: 70")
    # an answer that does not compile: the error is shown at its line, the scene stays
    llm.answers.append(BAD)
    page.get_by_test_id("chat-text").fill("make it a dog")
    page.get_by_test_id("chat-send").click()
    bad = page.get_by_test_id("chat-error-line")
    bad.first.wait_for(timeout=15_000)
    assert "canvas.add_local_description(location='nowhere')" in bad.all_inner_texts()
    assert "did not compile" in page.get_by_test_id("chat-errors").inner_text()
    assert _yaml(page) == text
    sent = llm.requests[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "make it a dog"} and sent[-2]["role"] == "assistant"
    assert "bbox=[9, 10, 70, 70]" in sent[-2]["content"]
    # retry asks again (the fake now answers well); undo goes back a turn at a time
    page.get_by_test_id("chat-retry").click()
    page.wait_for_function("!document.querySelector(\"[data-testid='chat-error-line']\")"
                           " && !document.querySelector(\"[data-testid='chat-streaming']\")")
    assert page.get_by_test_id("chat-user").last.inner_text() == "make it a dog"
    assert page.get_by_test_id("chat-assistant").last.locator(".line").first.text_content() == DRAGON.splitlines()[0]
    assert page.get_by_test_id("chat-assistant").count() == answers + 1  # every turn is kept
    assert "did not compile" not in page.get_by_test_id("chat-errors").inner_text()  # warnings may stay
    page.get_by_test_id("chat-undo").click()
    page.wait_for_function(f"document.querySelectorAll(\"[data-testid='chat-assistant']\").length === {answers}")
    assert _yaml(page) == text
    page.get_by_test_id("chat-undo").click()
    page.wait_for_function(
        "t => document.querySelector(\"[data-testid='spec-yaml']\").value === t", arg=original)
    assert page.get_by_test_id("chat-assistant").count() == 0
    page.wait_for_function("document.querySelector(\"[data-testid='dirty']\").hidden")


def test_new_spec_keyboard_nudge_and_a_rejected_edit(page, served):
    from omostc import load_spec
    from omostc.spec.model import region_rect

    folder = served[1]
    page.get_by_test_id("new-file-name").fill("sub/fresh")
    page.get_by_test_id("new-file-form").locator("button").click()
    page.wait_for_function("document.querySelector(\"[data-testid='current-file']\").textContent === 'sub/fresh.yaml'")
    _wait_yaml(page, r"description: A new scene\.")
    page.get_by_test_id("region-add").click()
    page.get_by_test_id("region-box-0").wait_for()
    # arrow keys move the selected box a cell at a time (Shift resizes); it leaves the vocabulary
    page.locator("body").press("ArrowRight")
    page.locator("body").press("Shift+ArrowDown")
    _wait_yaml(page, r"box:\n    x: 16\n    y: 15\n    w: 60\n    h: 61")
    # a value the schema refuses is reported, and the scene cannot be saved until it is fixed
    distance = page.get_by_test_id("field-distance_to_viewer")
    distance.fill("0")
    distance.press("Tab")
    page.get_by_test_id("spec-error").first.wait_for()
    assert "distance_to_viewer" in page.get_by_test_id("spec-errors").inner_text()
    assert page.get_by_test_id("save").is_disabled()
    distance.fill("3")
    distance.press("Tab")
    _wait_yaml(page, r"distance_to_viewer: 3")
    page.wait_for_function("!document.querySelector(\"[data-testid='save']\").disabled")
    page.get_by_test_id("save").click()
    page.locator("[data-testid='file-item'][data-path='sub/fresh.yaml']").wait_for()
    scene = load_spec(folder / "sub" / "fresh.yaml")
    assert region_rect(scene.regions[0]) == (15, 76, 16, 76)
    assert scene.regions[0].distance_to_viewer == 3


def test_token_mode_the_page_works_with_the_printed_url_only(browser, tmp_path):
    """Served beyond loopback, the printed URL's token lets the page in (the server turns it into a
    cookie, and the page drops it from the address bar); without it every request is refused."""
    folder, out = _specs(tmp_path)
    with _serve(folder, out, "--host", "0.0.0.0") as printed:
        token = re.search(r"\?token=([\w-]+)", printed)
        assert token, printed
        port = re.search(r":(\d+)/", printed).group(1)
        url = f"http://127.0.0.1:{port}/"
        context = browser.new_context()
        try:
            tab = context.new_page()
            assert tab.goto(url).status == 403
            tab.goto(f"{url}?token={token.group(1)}#tides-bbox.yaml")
            tab.wait_for_selector("body[data-ready='true']", timeout=20_000)
            tab.get_by_test_id("region-box-2").wait_for()  # opened from the address's #path
            assert "token" not in tab.url and tab.url.endswith("#tides-bbox.yaml")
            tab.get_by_test_id("render-start").click()
            tab.wait_for_function("document.querySelector(\"[data-testid='render-image']\").naturalWidth > 0",
                                  timeout=60_000)
            tab.reload()  # the cookie carries the token from now on
            tab.get_by_test_id("region-box-2").wait_for(timeout=20_000)
        finally:
            context.close()
