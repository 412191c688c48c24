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


# --- 3. every render setting bounded, from every source, before anything is allocated -------

@pytest.fixture(scope="module")
def good_png(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert cli("render", DRAGON, "-o", str(out), "--width", "64", "--height", "64", "-q").exit_code == 0
    return out / "dragon" / "12345.png"


def _options(**changes):
    def change(record):
        for key, value in changes.items():
            if key.startswith("highres_"):
                record["options"]["highres"][key[len("highres_"):]] = value
            else:
                record["options"][key] = value
    return change


def _seed(value):
    return lambda record: record.update(seed=value)


BAD_CHUNKS = [
    ("steps-1e9", _options(steps=1e9), "steps must be at most 1000"),
    ("width-100000", _options(width=100000), "width must be at most 8192"),
    ("highres-1000", _options(highres_scale=1000), "highres.scale must be at most 8"),
    ("pixels", _options(width=8192, height=8192, highres_scale=8), "megapixels"),
    ("half-a-step", _options(steps=20.5), "steps must be a whole number"),
    ("width-null", _options(width=None), "width must be given"),
    ("highres-null", _options(highres=None), "highres must be"),
    ("highres-number", _options(highres=5), "highres must be"),
    ("strength", _options(sketch_strength=1e-300), "sketch_strength must be at least 0.01"),
    ("denoise", _options(highres_denoise=1e-9), "highres.denoise must be at least 0.01"),
    ("size-rule", _options(width=904), "width must be a multiple of 64"),
    ("seed-negative", _seed(-1), "the seed must be a whole number from 0 to"),
    ("seed-huge", _seed(10**30), "(31 digits) is too long"),
    ("seed-float", _seed(1.5), "seed must be a whole number"),
]


@pytest.mark.parametrize("name, change, words", BAD_CHUNKS, ids=[c[0] for c in BAD_CHUNKS])
def test_a_png_chunk_with_settings_out_of_bounds_fails_alone(tmp_path, good_png, name, change, words):
    bad = doctored_png(good_png, tmp_path / "bad" / "x.png", change)
    res = cli("render", "--from-png", bad, "--from-png", str(good_png), "-o", str(tmp_path / "again"))
    assert res.exit_code == 1 and words in res.stderr, res.output
    assert "Traceback" not in res.output and "Error:" not in res.stderr.split(words)[0][-40:]
    assert (tmp_path / "again" / "dragon" / "12345.png").is_file()
    assert not (tmp_path / "again" / "bad").exists()


def test_whole_numbers_written_as_floats_are_read_as_numbers(tmp_path, good_png):
    bad = doctored_png(good_png, tmp_path / "f" / "x.png", _options(width=128.0, steps=20.0, highres_steps=3.0))
    res = cli("render", "--from-png", bad, "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "o" / "f" / "12345.png").size == (128, 64)
    spec = write(tmp_path / "s.yaml", (REPO / "specs" / "dragon.yaml").read_text() + "render:\n  width: 128.0\n")
    res = cli("render", spec, "-o", str(tmp_path / "p"), "--height", "64")
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "p" / "s" / "12345.png").size == (128, 64)


def test_a_spec_over_the_pixel_budget_fails_alone(tmp_path):
    big = write(tmp_path / "big.yaml", (REPO / "specs" / "dragon.yaml").read_text()
                + "render:\n  width: 8192\n  height: 8192\n  highres:\n    scale: 8\n")
    res = cli("render", big, DRAGON, "-o", str(tmp_path / "o"), "--width", "64")
    # the flag sets the width of both: 64 x 8192 x 8^2 is within the budget, so both render
    assert res.exit_code == 0, res.output
    res = cli("render", big, DRAGON, "-o", str(tmp_path / "o2"), "--height", "64", "--width", "64",
              "--highres-scale", "1")
    assert res.exit_code == 0, res.output
    res = cli("render", big, DRAGON, "-o", str(tmp_path / "o3"))
    assert res.exit_code == 1, res.output
    assert f"{big}: error:" in res.stderr and "65536 x 65536" in res.stderr and "64 megapixels" in res.stderr
    assert (tmp_path / "o3" / "dragon" / "12345.png").is_file() and not (tmp_path / "o3" / "big").exists()


def test_flags_and_profiles_over_the_pixel_budget_fail_before_loading(tmp_path):
    res = cli("render", DRAGON, "--width", "8192", "--height", "8192", "--highres-scale", "8", "-o",
              str(tmp_path / "o"))
    assert res.exit_code == 2 and "megapixels" in res.stderr, res.output
    profile = write(tmp_path / "big.yaml", "version: 1\nbackend: preview\nrender:\n  width: 8192\n  height: 8192\n"
                    "  highres:\n    scale: 4.5\n")
    res = cli("render", DRAGON, "-p", profile, "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and f"{profile}: error:" in res.stderr and "megapixels" in res.stderr, res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, value", [("--sketch-strength", "0.001"), ("--highres-denoise", "0.005")])
def test_strengths_too_small_to_sample_are_usage_errors(tmp_path, flag, value):
    """Omost's sampler makes steps / strength sigmas: 25 / 1e-300 of them would never be allocated."""
    res = cli("render", DRAGON, flag, value, "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "at least 0.01" in res.stderr, res.output


def test_a_scene_with_too_many_regions_fails_alone(tmp_path):
    from omostc.spec.render import MAX_REGIONS

    many = write(tmp_path / "many.yaml", scene_yaml(*[(i % 80, i % 80, 10, 10) for i in range(MAX_REGIONS + 1)]))
    ok = write(tmp_path / "ok.yaml", scene_yaml(*[(i % 80, i % 80, 10, 10) for i in range(MAX_REGIONS)]))
    res = cli("render", many, ok, "--width", "64", "--height", "64", "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and f"{many}: error:" in res.stderr, res.output
    assert f"{MAX_REGIONS + 1} regions" in res.stderr and f"at most {MAX_REGIONS}" in res.stderr
    assert (tmp_path / "o" / "ok" / "12345.png").is_file() and not (tmp_path / "o" / "many").exists()


def test_seeds_counting_up_past_the_largest_seed_fail_alone(tmp_path):
    from omostc.spec.render import MAX_SEED

    spec = write(tmp_path / "last.yaml", (REPO / "specs" / "dragon.yaml").read_text()
                 + f"render:\n  seed: {MAX_SEED}\n")
    res = cli("render", spec, DRAGON, "--images", "2", "--width", "64", "--height", "64", "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and "largest seed" in res.stderr, res.output
    assert (tmp_path / "o" / "dragon" / "12346.png").is_file() and not (tmp_path / "o" / "last").exists()


def test_a_profile_with_too_many_seeds_fails_before_loading(tmp_path):
    seeds = ", ".join(str(i) for i in range(1001))
    profile = write(tmp_path / "p.yaml", f"version: 1\nbackend: preview\nseeds: [{seeds}]\n")
    res = cli("render", DRAGON, "-p", profile, "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and "at most 1000" in res.stderr, res.output
    assert not (tmp_path / "o").exists()


# --- 4. one size rule ------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["904", "72", "100"])
def test_sizes_that_are_not_multiples_of_64_are_refused_not_floored(tmp_path, size):
    res = cli("render", DRAGON, "--width", size, "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "multiple of 64" in res.stderr, res.output
    spec = write(tmp_path / "s.yaml", (REPO / "specs" / "dragon.yaml").read_text() + f"render:\n  height: {size}\n")
    res = cli("render", spec, "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and "multiple of 64" in res.stderr, res.output
    profile = write(tmp_path / "p.yaml", f"version: 1\nbackend: preview\nrender:\n  width: {size}\n")
    res = cli("render", DRAGON, "-p", profile, "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and "multiple of 64" in res.stderr, res.output


def test_the_size_rule_is_stated_in_the_schema_and_help():
    scene = json.loads((REPO / "schemas" / "scene.schema.json").read_text())
    profile = json.loads((REPO / "schemas" / "profile.schema.json").read_text())
    for schema in (scene["properties"]["render"], profile["properties"]["render"]):
        for side in ("width", "height"):
            assert schema["properties"][side]["multipleOf"] == 64
            assert "multiple of 64" in schema["properties"][side]["description"]
    res = cli("render", "--help")
    assert "multiple of 64" in res.output and "never rounded" in res.output and "floored" not in res.output
    assert "multiples of 64" in (REPO / "README.md").read_text()


# --- PNGs that are not what they claim -------------------------------------------------------

def _bomb(good, target) -> str:
    """``good`` with its header patched to claim 40000 x 40000 pixels."""
    import struct
    import zlib

    data = good.read_bytes()
    i = data.index(b"IHDR")
    header = struct.pack(">II", 40000, 40000) + data[i + 12:i + 17]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header) & 0xFFFFFFFF)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data[:i + 4] + header + crc + data[i + 21:])
    return str(target)


def test_pngs_claiming_huge_sizes_or_text_fail_alone(tmp_path, good_png):
    bomb = _bomb(good_png, tmp_path / "bomb" / "x.png")
    image = Image.open(good_png)
    info = PngImagePlugin.PngInfo()
    for key, value in image.text.items():
        info.add_itxt(key, value)
    info.add_text("junk", "a" * 3 * 2**20, zip=True)  # more than Pillow decompresses
    (tmp_path / "ztxt").mkdir()
    image.save(tmp_path / "ztxt" / "x.png", pnginfo=info)
    res = cli("render", "--from-png", bomb, "--from-png", str(tmp_path / "ztxt" / "x.png"), "--from-png",
              str(good_png), "-o", str(tmp_path / "o"))
    assert res.exit_code == 1, res.output
    assert f"{bomb}: error: cannot read the image: its header claims more pixels" in res.stderr
    assert "ztxt/x.png: error: cannot read the image" in res.stderr
    assert (tmp_path / "o" / "dragon" / "12345.png").is_file()


def test_an_output_that_is_not_a_readable_png_is_rendered_again(tmp_path, good_png):
    out = tmp_path / "o"
    _bomb(good_png, out / "dragon" / "12345.png")
    res = cli("render", DRAGON, "--width", "64", "--height", "64", "-o", str(out))
    assert res.exit_code == 0 and "1 rendered" in res.stderr, res.output
    assert Image.open(out / "dragon" / "12345.png").size == (64, 64)


# --- 5. the offline tokenizer counts as the renderer's ---------------------------------------

@pytest.fixture(scope="module")
def model_tokenizers(tmp_path_factory):
    """transformers' tokenizers of a model folder (SDXL's tokenizer/ and tokenizer_2/), as the
    SDXL renderer loads them."""
    pytest.importorskip("transformers", reason="transformers is a dev dependency")
    from omostc.ir.clip.tokenize import TransformersClipTokenizer, write_tokenizer_folder

    folder = tmp_path_factory.mktemp("model")
    write_tokenizer_folder(folder / "tokenizer")
    write_tokenizer_folder(folder / "tokenizer_2", pad="zero")
    return (TransformersClipTokenizer.from_pretrained(folder, "tokenizer"),
            TransformersClipTokenizer.from_pretrained(folder, "tokenizer_2"))


def _subprompts(paths) -> list[str]:
    from omostc import CompileError, compile_file
    from omostc.ir.lowering import lower

    texts: set[str] = set()
    for path in paths:
        try:
            scene = compile_file(path).scene
        except CompileError:
            continue
        for layer in lower(scene).layers:
            texts.update(layer.prefixes + layer.suffixes)
    return sorted(texts)


TRICKY = [
    "the", "Tom &amp; Jerry", "mojibake: Ã©", "naïve café — “quotes” ’s it's", "the Moon’s influence.",
    "I'M LOUD!!!", "Wow!", "?!", "emoji 🐉🔥 ok", "tabs\tand\nnewlines  x", "123 4.5e6 1,000", "日本語のテキスト",
    "<|startoftext|> hi <|endoftext|>", "'s 're 've 'd 'll 'm 't", "a" * 300, "", "   ",
    "Ünïcödé ÀÉÎÕÜ straße ﬁ", "e\u0301 combining", "ＦＵＬＬＷＩＤＴＨ", "İstanbul ΣΊΣΥΦΟΣ", "\u00a0nbsp\u2003em",
]


def _check_equal(texts, model_tokenizers):
    from omostc.ir.clip.tokenize import OfflineClipTokenizer

    t1, t2 = model_tokenizers
    first, second = OfflineClipTokenizer(), OfflineClipTokenizer(pad="zero")
    assert [t for t, a, b in zip(texts, first.encode(texts), t1.encode(texts)) if a != b] == []
    assert [t for t, a, b in zip(texts, second.encode(texts), t2.encode(texts)) if a != b] == []


def test_offline_tokenizer_gives_the_model_tokenizers_ids_on_the_shipped_scenes(model_tokenizers):
    texts = _subprompts(sorted((REPO / "specs" / "src").iterdir())) + TRICKY
    assert len(texts) > 100
    _check_equal(texts, model_tokenizers)


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared corpus is not here ({CORPUS})")
def test_offline_tokenizer_gives_the_model_tokenizers_ids_on_the_whole_corpus(model_tokenizers):
    texts = _subprompts(sorted(CORPUS.glob("[0-9][0-9][0-9].txt")))
    assert len(texts) > 1500 and any("’" in t for t in texts)  # curly apostrophes: ftfy would change them
    _check_equal(texts, model_tokenizers)


def test_offline_tokenizer_gives_the_model_tokenizers_ids_on_any_text(model_tokenizers):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.text(max_size=40) | st.text(st.sampled_from(list("ab &;'!?.,-  é’“\t\nİΣ<|>")), max_size=30),
                    min_size=1, max_size=8))
    def check(texts):
        _check_equal(texts, model_tokenizers)

    check()


def test_lower_counts_tokens_as_the_renderer_does(tmp_path, model_tokenizers):
    """`omostc lower` without a model gives the bags `omostc lower --model DIR` gives."""
    spec = write(tmp_path / "s.yaml", (REPO / "specs" / "dragon.yaml").read_text().replace(
        "A mighty dragon.", "The Moon’s dragon, ‘quoted’ &amp; “curly”."))
    offline = cli("lower", spec)
    folder = tmp_path / "model"
    from omostc.ir.clip.tokenize import write_tokenizer_folder

    write_tokenizer_folder(folder / "tokenizer")
    model = cli("lower", spec, "--model", str(folder))
    assert offline.exit_code == model.exit_code == 0, offline.output + model.output
    strip = [json.loads(r.stdout) for r in (offline, model)]
    for ir in strip:
        ir.pop("tokenizer", None)
    assert strip[0] == strip[1]


BANG = (REPO / "specs" / "dragon.yaml").read_text().replace("A mighty dragon.", "A mighty dragon. Wow!").replace(
    "atmosphere: Intense and menacing", "atmosphere: Loud?! Intense and menacing")


def test_sdxl_lowering_warns_where_the_second_tokenizer_counts_differently(tmp_path, tiny_model_dir):
    pytest.importorskip("diffusers", reason="diffusers is a dev dependency")
    from omostc import load_spec
    from omostc.backends.sdxl.models import load_sdxl
    from omostc.backends.sdxl.render import SDXLRegionalBackend

    backend = SDXLRegionalBackend(load_sdxl(tiny_model_dir, dtype="fp32", device="cpu"))
    ir = backend.lower(load_spec(write(tmp_path / "bang.yaml", BANG)))
    messages = [d.message for d in ir.warnings]
    assert any(m.startswith("region 1 (A mighty dragon. Wow!.): prefix 1 ('A mighty dragon. Wow!.') is ") and
               "tokenizer_2, which reads '!' as its padding token" in m for m in messages), messages
    assert any("sub-prompt" in m and "Loud?!" in m for m in messages), messages
    assert all(d.severity == "warning" for d in ir.warnings)
    assert backend.lower(load_spec(DRAGON)).warnings == []


def test_render_shows_the_lowering_warnings_once_per_input(tmp_path, tiny_model_dir):
    spec = write(tmp_path / "bang.yaml", BANG)
    res = cli("render", spec, "-p", "tiny", "--model", str(tiny_model_dir), "--images", "2", "--steps", "1",
              "--width", "64", "--height", "64", "--device", "cpu", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith(f"{spec}: warning: region 1")]
    assert len(warnings) == 2 and all("tokenizer_2" in w for w in warnings), res.stderr  # 2 images, each once
    assert "prefix 1 ('A mighty dragon. Wow!.')" in warnings[0] and "sub-prompt 7 ('Loud?!" in warnings[1]
    rows = [json.loads(line) for line in (tmp_path / "o" / "manifest.jsonl").read_text().splitlines()]
    assert all(any("tokenizer_2" in w for w in row["warnings"]) for row in rows)


# --- 6. how much a PNG tells about its making -----------------------------------------------

SECRET = """provenance:
  source: /home/alice/private/answer.md
  prompt: my secret prompt
  model: lllyasviel/omost-llama-3-8b-4bits
  conversation:
  - role: user
    content: secret words of the conversation
  - role: assistant
    content: the answer
"""


@pytest.fixture
def secret_spec(tmp_path):
    text = (REPO / "specs" / "dragon.yaml").read_text()
    return write(tmp_path / "secret.yaml", text[:text.index("provenance:")] + SECRET)


def _chunks(path) -> dict[str, str]:
    return dict(Image.open(path).text)


def test_full_provenance_is_the_default_and_carries_the_conversation(tmp_path, secret_spec):
    res = cli("render", secret_spec, "--width", "64", "--height", "64", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    chunks = _chunks(tmp_path / "o" / "secret" / "12345.png")
    assert "secret words of the conversation" in chunks["omostc.spec"] and "/home/alice" in chunks["omostc.spec"]
    assert set(chunks) == {"omostc.key", "omostc.spec", "omostc.render", "parameters"}


def test_provenance_spec_keeps_the_scene_and_settings_only(tmp_path, secret_spec):
    out = tmp_path / "o"
    res = cli("render", secret_spec, "--provenance", "spec", "--width", "64", "--height", "64", "-o", str(out))
    assert res.exit_code == 0, res.output
    png = out / "secret" / "12345.png"
    chunks = _chunks(png)
    assert set(chunks) == {"omostc.key", "omostc.spec", "omostc.render", "parameters"}
    text = "".join(chunks.values())
    assert "secret" not in chunks["omostc.spec"] and "/home/alice" not in text and "my secret prompt" not in text
    assert "provenance:" not in chunks["omostc.spec"]
    again = cli("render", "--from-png", str(png), "-o", str(tmp_path / "again"))
    assert again.exit_code == 0, again.output
    copy = tmp_path / "again" / "secret" / "12345.png"
    assert Image.open(copy).tobytes() == Image.open(png).tobytes() and _chunks(copy) == chunks


def test_provenance_none_keeps_only_the_key_and_cannot_be_rerendered(tmp_path, secret_spec):
    out = tmp_path / "o"
    res = cli("render", secret_spec, "--provenance", "none", "--width", "64", "--height", "64", "-o", str(out))
    assert res.exit_code == 0, res.output
    png = out / "secret" / "12345.png"
    chunks = _chunks(png)
    assert set(chunks) == {"omostc.key"} and "12345" not in chunks["omostc.key"]  # a hash, no seed
    again = cli("render", secret_spec, "--provenance", "none", "--width", "64", "--height", "64", "-o", str(out))
    assert again.exit_code == 0 and "1 already rendered" in again.stderr, again.output  # the key still works
    res = cli("render", "--from-png", str(png), "--from-png", str(out / "secret" / "12345.png"), "-o",
              str(tmp_path / "x"))
    assert res.exit_code == 1 and "--provenance none" in res.stderr and "cannot be re-rendered" in res.stderr


def test_changing_the_provenance_rewrites_the_pngs(tmp_path, secret_spec):
    out = tmp_path / "o"
    args = [secret_spec, "--width", "64", "--height", "64", "-o", str(out)]
    assert cli("render", *args).exit_code == 0
    res = cli("render", *args, "--provenance", "spec")
    assert res.exit_code == 0 and "1 rendered" in res.stderr, res.output  # not kept: it would tell too much
    assert "secret" not in _chunks(out / "secret" / "12345.png")["omostc.spec"]
    res = cli("render", *args, "--provenance", "spec")
    assert "1 already rendered" in res.stderr


def test_provenance_from_a_profile_and_for_pngs_re_rendered(tmp_path, secret_spec):
    profile = write(tmp_path / "publish.yaml", "version: 1\nbackend: preview\nrender:\n  provenance: none\n")
    res = cli("render", secret_spec, "-p", profile, "--width", "64", "--height", "64", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    assert set(_chunks(tmp_path / "o" / "secret" / "12345.png")) == {"omostc.key"}
    assert cli("render", secret_spec, "--width", "64", "--height", "64", "-o", str(tmp_path / "f")).exit_code == 0
    full = tmp_path / "f" / "secret" / "12345.png"
    res = cli("render", "--from-png", str(full), "--provenance", "spec", "-o", str(tmp_path / "s"))
    assert res.exit_code == 0, res.output
    assert "secret words" not in _chunks(tmp_path / "s" / "secret" / "12345.png")["omostc.spec"]


def test_provenance_spec_names_a_local_model_by_its_file_name_only(tmp_path, tiny_model_dir):
    res = cli("render", DRAGON, "-p", "tiny", "--model", str(tiny_model_dir), "--provenance", "spec", "--steps", "1",
              "--width", "64", "--height", "64", "--device", "cpu", "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    chunks = _chunks(tmp_path / "o" / "dragon" / "12345.png")
    assert str(tiny_model_dir.parent) not in "".join(chunks.values())
    assert json.loads(chunks["omostc.render"])["model"] == tiny_model_dir.name
    assert f"Model: {tiny_model_dir.name}" in chunks["parameters"]


def test_settings_keys_do_not_depend_on_provenance():
    """How much a PNG tells is not part of the settings hash (the key says it apart): changing
    --provenance rewrites the PNGs' chunks, and the settings hash of what made them stays. (The
    hash of omostc 0.1 is not kept: the key now covers the render version and the model's
    identity, issue 13, so upgrading renders again once.)"""
    from omostc.batch.profile import load_profile
    from omostc.batch.runner import settings_hash
    from omostc.spec.render import RenderOptions

    profile = load_profile("preview")
    assert settings_hash(RenderOptions(), profile) == settings_hash(RenderOptions(provenance="spec"), profile)
    assert settings_hash(RenderOptions(), profile) != settings_hash(RenderOptions(steps=3), profile)


def test_a_diffusers_sampler_with_a_strength_below_one_step_still_samples(tmp_path, tiny_model_dir):
    """steps x strength < 1 left diffusers' rule no timestep at all (an empty tensor, a RuntimeError)."""
    res = cli("render", DRAGON, "-p", "tiny", "--model", str(tiny_model_dir), "--sampler", "EulerDiscreteScheduler",
              "--sketch-strength", "0.01", "--steps", "1", "--width", "64", "--height", "64", "--device", "cpu",
              "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output


def test_a_png_whose_scene_has_too_many_regions_fails_alone(tmp_path, good_png):
    from omostc.spec.render import MAX_REGIONS

    image = Image.open(good_png)
    info = PngImagePlugin.PngInfo()
    many = scene_yaml(*[(i % 80, i % 80, 10, 10) for i in range(MAX_REGIONS + 1)])
    for key, value in image.text.items():
        info.add_itxt(key, many if key == "omostc.spec" else value)
    (tmp_path / "many").mkdir()
    image.save(tmp_path / "many" / "x.png", pnginfo=info)
    res = cli("render", "--from-png", str(tmp_path / "many" / "x.png"), "--from-png", str(good_png), "-o",
              str(tmp_path / "o"))
    assert res.exit_code == 1 and f"{MAX_REGIONS + 1} regions" in res.stderr, res.output
    assert (tmp_path / "o" / "dragon" / "12345.png").is_file()


def test_a_png_whose_chunks_follow_its_pixels_is_still_re_rendered(tmp_path, good_png):
    """Tools that re-save a PNG may move text chunks after the pixels; --from-png still finds them."""
    import struct
    import zlib

    data = good_png.read_bytes()
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        chunks.append(data[i:i + 12 + length])
        i += 12 + length
    text = [c for c in chunks if c[4:8] in (b"tEXt", b"iTXt", b"zTXt")]
    rest = [c for c in chunks if c not in text]
    assert text and zlib.crc32(rest[-1][4:8]) == zlib.crc32(b"IEND")
    moved = tmp_path / "moved" / "x.png"
    moved.parent.mkdir()
    moved.write_bytes(data[:8] + b"".join(rest[:-1] + text + rest[-1:]))
    res = cli("render", "--from-png", str(moved), "-o", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
