"""Rendering hardening (issue 12): tiny and edge boxes draw at any size, a damaged manifest does
not stop the next batch, every render setting is bounded before anything is allocated, one
size rule, the offline tokenizer counts as the renderer's, and PNG provenance can be limited."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import CORPUS, REPO
from PIL import Image, PngImagePlugin

from omostc.cli import main

DRAGON = str(REPO / "specs" / "dragon.yaml")


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def scene_yaml(*boxes: tuple[int, int, int, int], name: str = "a dot") -> str:
    regions = "".join(
        f"""  - description: {name} {i}
    box: {{x: {x}, y: {y}, w: {w}, h: {h}}}
    distance_to_viewer: {i + 1}
    detailed_descriptions: []
    tags: dot
    atmosphere: calm
    style: plain
    quality_meta: good
    color: red
""" for i, (x, y, w, h) in enumerate(boxes))
    return ("version: 1\nglobal:\n  description: a room\n  detailed_descriptions: []\n  tags: room\n"
            f"  color: white\nregions:\n{regions}")


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def doctored_png(good, target, change) -> str:
    """A copy of ``good`` whose omostc.render chunk ``change`` edits (a dict, in place)."""
    image = Image.open(good)
    record = json.loads(image.text["omostc.render"])
    change(record)
    info = PngImagePlugin.PngInfo()
    for key, value in image.text.items():
        info.add_itxt(key, json.dumps(record) if key == "omostc.render" else value)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, pnginfo=info)
    return str(target)


# --- 1. tiny boxes, boxes at the edges, labels that do not fit ------------------------------

EDGE_BOXES = [(5, 5, 1, 1), (89, 0, 1, 1), (0, 89, 1, 1), (89, 89, 1, 1), (0, 0, 90, 90), (88, 40, 2, 1),
              (0, 0, 1, 90), (0, 0, 90, 1), (45, 45, 1, 2)]


@pytest.mark.parametrize("size", ["64", "128", "192", "256", "1024"])
def test_tiny_and_edge_boxes_render_at_every_size(tmp_path, size):
    spec = write(tmp_path / "tiny.yaml", scene_yaml(*EDGE_BOXES, name="a very long name " * 6))
    res = cli("render", spec, "--width", size, "--height", size, "-o", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "out" / "tiny" / "12345.png").size == (int(size), int(size))


@pytest.mark.parametrize("box", EDGE_BOXES)
@pytest.mark.parametrize("size", [(64, 64), (90, 90), (100, 77), (256, 256), (64, 1024), (1024, 64)])
def test_layout_picture_of_any_box_at_any_size(box, size):
    """The layout drawing itself (``omostc preview`` draws at any size, not only multiples of 64):
    the label stays inside the picture, whatever the box and the size."""
    from omostc import load_spec
    from omostc.ir.lowering import lower
    from omostc.ir.pictures import label_boxes, layout_image

    scene = load_spec_text(scene_yaml(box, name="x" * 200), load_spec)
    ir = lower(scene)
    image = layout_image(ir, *size)
    assert image.size == size
    for left, top, right, bottom in label_boxes(ir, *size):
        assert 0 <= left <= right <= size[0] and 0 <= top <= bottom <= size[1]


def load_spec_text(text: str, load_spec):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        return load_spec(write(Path(folder) / "s.yaml", text))


@pytest.mark.skipif(not (CORPUS / "025.txt").is_file(), reason="the shared corpus (025.txt) is not here")
def test_corpus_025_renders_at_64_px(tmp_path):
    res = cli("render", str(CORPUS / "025.txt"), "--width", "64", "--height", "64", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    res = cli("preview", str(CORPUS / "025.txt"), "--width", "64", "--height", "64", "-o", str(tmp_path / "p.png"))
    assert res.exit_code == 0, res.output


# --- 2. a damaged manifest ------------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    b"\xff\xfe\x00garbage\n",
    b'{"name": "dragon", "seed": 12345, "status": "rendered", "x": "\xc3"}\n',
    b'{"name": "\\ud800", "seed": 1, "status": "rendered"}\n',  # a lone surrogate, escaped
    b'{"name": ["a"], "seed": 1}\n[1, 2]\n"text"\nnull\n{"name": "a", "seed": {"x": 1}}\n',
])
def test_a_damaged_manifest_does_not_stop_the_next_batch(tmp_path, damage):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.jsonl").write_bytes(b'{"name": "old", "seed": 7, "status": "rendered"}\n' + damage)
    res = cli("render", DRAGON, "--width", "64", "--height", "64", "-o", str(out))
    assert res.exit_code == 0, res.output
    text = (out / "manifest.jsonl").read_bytes().decode("utf-8")  # valid UTF-8 again
    rows = [json.loads(line) for line in text.splitlines()]
    assert [(r["name"], r["seed"]) for r in rows if r["name"] in ("old", "dragon")] == [("old", 7), ("dragon", 12345)]
    assert (out / "dragon" / "12345.png").is_file()


def test_a_spec_whose_file_name_is_not_utf8_renders_and_the_manifest_stays_utf8(tmp_path):
    import os

    folder = os.fsencode(str(tmp_path))
    name = os.fsdecode(folder + b"/caf\xe9.yaml")  # a Latin-1 file name: a lone surrogate in Python
    with open(name, "w", encoding="utf-8") as fh:
        fh.write((REPO / "specs" / "dragon.yaml").read_text(encoding="utf-8"))
    out = tmp_path / "out"
    res = cli("render", name, "--width", "64", "--height", "64", "-o", str(out))
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_bytes().decode("utf-8").splitlines()]
    assert rows[0]["status"] == "rendered"
    again = cli("render", name, "--width", "64", "--height", "64", "-o", str(out))
    assert again.exit_code == 0 and "already rendered" in again.stderr, again.output
