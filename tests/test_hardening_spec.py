"""Issue 12, the YAML half: specs, profiles and PNG spec chunks are read as YAML 1.2 data with
bounded size, depth and numbers; every problem is a located error, never a crash, and a batch
(``omostc validate a b c``) goes on past a bad file."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from omostc import SpecError, dumps_spec, loads_spec
from omostc.batch.outputs import RENDER_KEY, SPEC_KEY
from omostc.cli import main
from omostc.spec import yamlio

REPO = Path(__file__).resolve().parents[1]
DRAGON = (REPO / "specs" / "dragon.yaml").read_text(encoding="utf-8")
BOX = (REPO / "specs" / "tides-bbox.yaml").read_text(encoding="utf-8")
LOADERS = getattr(yamlio, "LOADERS", [None])  # libyaml's C parser where present, and the pure-Python one
MAX_DEPTH = getattr(yamlio, "MAX_DEPTH", 64)
MAX_SPEC_BYTES = getattr(yamlio, "MAX_SPEC_BYTES", 8 * 1024 * 1024)


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def errors(text: str, loader=None) -> list:
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="s.yaml", **({"loader": loader} if loader else {}))
    return info.value.diagnostics


def first(text: str, loader=None):
    return errors(text, loader)[0]


def with_render(spec: str, block: str) -> str:
    return spec.replace("\nglobal:", f"\nrender:\n{block}global:", 1)


def clean(res) -> str:
    assert "Traceback" not in res.output
    return res.stderr


def profile(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text("version: 1\nbackend: preview\n" + body, encoding="utf-8")
    return path


def rendered_png(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", tmp_path / "good.yaml", "-o", tmp_path / "first", "-q")
    assert res.exit_code == 0, res.stderr
    return next((tmp_path / "first").rglob("*.png"))


def png_with(tmp_path: Path, *, spec: str | None = None, render: str | None = None, name="x.png") -> Path:
    """A copy of an omostc PNG with its spec or render chunk replaced."""
    source = rendered_png(tmp_path) if not (tmp_path / "first").exists() else next((tmp_path / "first").rglob("*.png"))
    with Image.open(source) as im:
        text = dict(im.text)
        image = im.copy()
    text[SPEC_KEY] = spec if spec is not None else text[SPEC_KEY]
    text[RENDER_KEY] = render if render is not None else text[RENDER_KEY]
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    out = tmp_path / name
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    out.write_bytes(buf.getvalue())
    return out


# --- 1. lone surrogates -----------------------------------------------------------------------

SURROGATE = DRAGON.replace("description: A fierce battle between warriors and a dragon.",
                           'description: "A fierce battle \\ud800 between warriors."', 1)


def test_surrogate_escape_in_a_spec_is_a_located_error_for_validate_lower_and_render(tmp_path):
    assert SURROGATE != DRAGON
    path = tmp_path / "s.yaml"
    path.write_text(SURROGATE, encoding="utf-8")
    line = SURROGATE.splitlines().index(next(l for l in SURROGATE.splitlines() if "\\ud800" in l)) + 1
    for args in (["validate", path], ["lower", path], ["preview", path, "-o", tmp_path / "p.png"],
                 ["render", path, "-o", tmp_path / "out"]):
        res = run(*args)
        err = clean(res)
        assert res.exit_code == 1, (args, err)
        assert f"s.yaml:{line}:" in err and "surrogate" in err, (args, err)
        err.encode("utf-8")


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\U0000d800", "\\ude00\\ud83d", "\\ud83d x\\ude00"])
def test_every_lone_surrogate_escape_is_refused_by_each_loader(loader, escape):
    err = first(f'version: 1\nglobal:\n  description: "a {escape}"\n', loader)
    assert "surrogate" in err.message and err.line == 3


@pytest.mark.parametrize("loader", LOADERS)
def test_escaped_surrogate_pairs_as_json_writes_them_are_one_character(loader, tmp_path):
    spec = json.loads(json.dumps(yaml.safe_load(DRAGON)))
    spec["global"]["description"] = "A dragon \U0001F409 and 猫."
    text = json.dumps(spec)  # ASCII: the dragon as "\ud83d\udc09"
    assert "\\ud83d\\udc09" in text
    scene = loads_spec(text, **({"loader": loader} if loader else {}))
    assert scene.global_description.description == "A dragon \U0001F409 and 猫."
    (tmp_path / "s.json").write_text(text, encoding="utf-8")
    assert run("lower", tmp_path / "s.json").exit_code == 0


def test_raw_lone_surrogates_in_text_are_located_errors():
    err = first("version: 1\nglobal:\n  description: a \ud800 b\n")
    assert "surrogate" in err.message and (err.line, err.col) == (3, 18)


def test_surrogates_in_profiles_and_png_spec_chunks(tmp_path):
    bad = profile(tmp_path, 'description: "\\udc80"\n')
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", tmp_path / "good.yaml", "-p", bad, "-o", tmp_path / "out")
    assert res.exit_code == 1 and f"{bad}:3:" in clean(res) and "surrogate" in res.stderr
    png = png_with(tmp_path, spec=SURROGATE)
    res = run("render", "--from-png", png, "-o", tmp_path / "again")
    assert res.exit_code == 1 and "surrogate" in clean(res)
    with Image.open(png) as im:
        data = json.loads(im.text[RENDER_KEY])
    data["options"]["negative_prompt"] = "lowres \ud800"
    png = png_with(tmp_path, render=json.dumps(data), name="neg.png")
    res = run("render", "--from-png", png, "-o", tmp_path / "again2")
    assert res.exit_code == 1 and "surrogate" in clean(res)
    res.stderr.encode("utf-8")


# --- 2. integers over Python's 4,300-digit limit ------------------------------------------------

HUGE = "9" + "8" * 4999


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("number", [HUGE, "-" + HUGE, "0x" + "f" * 5000, "0o" + "7" * 5000, "+" + HUGE])
def test_huge_integers_are_located_with_their_first_digits_and_length(loader, number):
    text = with_render(DRAGON, f"  seed: {number}\n")
    err = first(text, loader)
    assert (err.line, err.col) == (4, 9), err
    assert "digits" in err.message and number[:12] in err.message and number not in err.message
    assert len(err.format()) < 1000


def test_huge_integers_in_spec_profile_and_png_through_the_cli(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(with_render(DRAGON, f"  seed: {HUGE}\n"), encoding="utf-8")
    res = run("validate", spec)
    assert res.exit_code == 1 and "s.yaml:4:9:" in clean(res) and "5000 digits" in res.stderr
    assert HUGE not in res.stderr and "set_int_max_str_digits" not in res.stderr
    bad = profile(tmp_path, f"seeds: [{HUGE}]\n")
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", tmp_path / "good.yaml", "-p", bad, "-o", tmp_path / "out")
    assert res.exit_code == 1 and f"{bad}:3:" in clean(res) and "5000 digits" in res.stderr
    assert HUGE not in res.stderr
    png = png_with(tmp_path, spec=with_render(DRAGON, f"  seed: {HUGE}\n"))
    res = run("render", "--from-png", png, "-o", tmp_path / "again")
    assert res.exit_code == 1 and "5000 digits" in clean(res) and HUGE not in res.stderr


def test_huge_integers_in_a_png_render_chunk(tmp_path):
    with Image.open(rendered_png(tmp_path)) as im:
        data = json.loads(im.text[RENDER_KEY])
    raw = json.dumps(data).replace(f'"seed": {data["seed"]}', f'"seed": {HUGE}')
    assert HUGE in raw
    png = png_with(tmp_path, render=raw, name="huge.png")
    res = run("render", "--from-png", png, "-o", tmp_path / "again")
    assert res.exit_code == 1 and "5000 digits" in clean(res)
    assert HUGE not in res.stderr and "set_int_max_str_digits" not in res.stderr


# --- 3. depth ---------------------------------------------------------------------------------

def deep_flow(n: int) -> str:
    return with_render(DRAGON, "  width: " + "[" * n + "]" * n + "\n")


def deep_block(n: int) -> str:
    n = min(n, 2000)  # one more column per level: the text grows as n squared
    nested = "".join(" " * (i + 3) + "k:\n" for i in range(n))
    return with_render(DRAGON, "  width:\n" + nested + " " * (n + 3) + "v\n")


def deep_seq(n: int) -> str:
    return with_render(DRAGON, "  width:\n  " + "- " * n + "x\n")


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("make", [deep_flow, deep_block, deep_seq])
@pytest.mark.parametrize("n", [500, 5000])
def test_deep_nesting_is_a_located_error_not_a_recursion_error(loader, make, n):
    err = first(make(n), loader)
    assert "nested" in err.message and str(MAX_DEPTH) in err.message and err.line is not None


def test_nesting_up_to_the_limit_is_read():
    n = MAX_DEPTH - 2  # the top level and render: are two levels
    ok = with_render(DRAGON, "  width: " + "[" * n + "]" * n + "\n")
    assert "nested" not in first(ok).message and "render.width" in first(ok).message
    assert "nested" in first(with_render(DRAGON, "  width: " + "[" * (n + 1) + "]" * (n + 1) + "\n")).message


def test_validate_goes_on_past_a_deep_file(tmp_path):
    for name, text in (("a.yaml", DRAGON), ("deep.yaml", deep_flow(500)), ("b.yaml", BOX)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    res = run("validate", *(tmp_path / n for n in ("a.yaml", "deep.yaml", "b.yaml")))
    assert res.exit_code == 1
    err = clean(res)
    assert "a.yaml: ok" in err and "b.yaml: ok" in err and "deep.yaml:4:" in err and "nested" in err
    assert "1 of 3 specs failed" in err


def test_deep_profiles_and_png_chunks(tmp_path):
    bad = profile(tmp_path, "render: " + "[" * 500 + "]" * 500 + "\n")
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", tmp_path / "good.yaml", "-p", bad, "-o", tmp_path / "out")
    assert res.exit_code == 1 and "nested" in clean(res)
    png = png_with(tmp_path, spec=deep_flow(500))
    res = run("render", "--from-png", png, "-o", tmp_path / "again")
    assert res.exit_code == 1 and "nested" in clean(res)
    png = png_with(tmp_path, render="[" * 100_000 + "]" * 100_000, name="deep-json.png")
    res = run("render", "--from-png", png, "-o", tmp_path / "again")
    assert res.exit_code == 1 and "nested" in clean(res) and "RecursionError" not in res.stderr


@pytest.mark.parametrize("loader", LOADERS)
def test_aliases_cannot_stack_nesting_past_the_limit(loader):
    """Each anchored list is 50 levels deep and holds the one before: 6,000 levels once expanded."""
    defs = "x0: &x0 " + "[" * 50 + "]" * 50 + "\n"
    defs += "".join(f"x{k}: &x{k} " + "[" * 50 + f"*x{k - 1}" + "]" * 50 + "\n" for k in range(1, 120))
    text = with_render(DRAGON, "  width: *x119\n").replace("version: 1\n", "defs:\n" + "".join(
        "  " + line + "\n" for line in defs.splitlines()) + "version: 1\n")
    err = first(text, loader)
    assert "nested too deeply" in err.message and err.line == 4  # where x1 holds x0: 102 levels


def test_many_violations_are_reported_up_to_a_bound():
    head, rest = DRAGON.split("regions:\n")
    regions, tail = rest.split("provenance:")
    text = head + "regions:\n" + regions.replace("color: ", "color: x") * 100 + "provenance:" + tail
    errs = errors(text)
    assert len(errs) == yamlio.MAX_SHOWN + 1 and errs[-1].message.startswith("... and ")


def test_recursive_aliases_are_refused_not_a_hang():
    for text in ("version: 1\nglobal: &a [1, *a]\n", "version: 1\nglobal: &a {x: *a}\n"):
        t0 = time.perf_counter()
        assert "recursive" in first(text).message
        assert time.perf_counter() - t0 < 60  # a hang guard, not a timing: the bound only catches a stall


def test_a_png_text_chunk_too_large_to_decompress_is_a_failure_not_a_crash(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_itxt(SPEC_KEY, "x" * (3 * 1024 * 1024), zip=True)  # 3 KB compressed
    info.add_itxt(RENDER_KEY, "{}")
    Image.new("RGB", (8, 8)).save(tmp_path / "big.png", pnginfo=info)
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", "--from-png", tmp_path / "big.png", tmp_path / "good.yaml", "-o", tmp_path / "out")
    assert res.exit_code == 1 and "big.png: error: cannot read the image: a text chunk is larger" in clean(res)
    assert "1 rendered" in res.stderr


# --- 4. integers written as floats -------------------------------------------------------------

def test_integral_floats_are_read_as_integers_for_preview_and_render(tmp_path):
    text = with_render(DRAGON, "  width: 896.0\n  height: 1.152e3\n  seed: 7.0\n")
    scene = loads_spec(text)
    assert (scene.render.width, scene.render.height, scene.render.seed) == (896, 1152, 7)
    assert all(type(v) is int for v in (scene.render.width, scene.render.height, scene.render.seed))
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    assert run("validate", path).exit_code == 0
    res = run("preview", path, "-o", tmp_path / "p.png")
    assert res.exit_code == 0, clean(res)
    res = run("render", path, "-o", tmp_path / "out")
    assert res.exit_code == 0, clean(res)
    assert "width: 896\n" in dumps_spec(scene)


def test_box_version_and_highres_integers_written_as_floats(tmp_path):
    text = BOX.replace("version: 1", "version: 1.0")
    text = re.sub(r"(\n\s+[xywh]): (\d+)", r"\1: \2.0", text)
    assert " x: " in text and ".0" in text
    scene = loads_spec(text)
    assert scene.version == 1 and type(scene.version) is int
    assert all(type(getattr(r.box, k)) is int for r in scene.regions if r.box for k in "xywh")
    path = tmp_path / "b.yaml"
    path.write_text(text, encoding="utf-8")
    assert run("preview", path, "-o", tmp_path / "p.png").exit_code == 0
    hr = loads_spec(with_render(DRAGON, "  highres:\n    steps: 20.0\n    scale: 1.5\n"))
    assert type(hr.render.highres.steps) is int


def test_non_integral_floats_for_integers_say_so():
    err = first(with_render(DRAGON, "  width: 896.5\n"))
    assert err.line == 4 and "whole number" in err.message and "896.5" in err.message


def test_profiles_and_png_chunks_read_integral_floats_as_integers(tmp_path):
    from omostc.batch.profile import load_profile

    good = profile(tmp_path, "images: 2.0\nseeds: [7.0, 8.0]\nrender:\n  width: 128.0\n  height: 128\n")
    loaded = load_profile(str(good))
    assert (loaded.images, loaded.seeds, loaded.render.width) == (2, [7, 8], 128)
    assert type(loaded.images) is int and all(type(s) is int for s in loaded.seeds)
    spec = tmp_path / "s.yaml"
    spec.write_text(DRAGON, encoding="utf-8")
    res = run("render", spec, "-p", good, "-o", tmp_path / "out")
    assert res.exit_code == 0, clean(res)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["7.png", "8.png"]
    png = png_with(tmp_path, name="x.png")
    with Image.open(png) as im:
        data = json.loads(im.text[RENDER_KEY])
    data["options"]["width"] = 256.0
    data["seed"] = float(data["seed"])
    png = png_with(tmp_path, render=json.dumps(data), name="floats.png")
    res = run("render", "--from-png", png, "-o", tmp_path / "again")
    assert res.exit_code == 0, clean(res)
    data["seed"] = 1.5
    png = png_with(tmp_path, render=json.dumps(data), name="half.png")
    res = run("render", "--from-png", png, "-o", tmp_path / "again2")
    assert res.exit_code == 1 and "seed" in clean(res) and "whole number" in res.stderr


# --- 5. size and speed ------------------------------------------------------------------------

def test_the_c_loader_is_used_and_keeps_locations():
    if not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML without libyaml")
    assert issubclass(LOADERS[0], yaml.CSafeLoader)
    err = first(DRAGON.replace("  color: darkslategray", "  color: darkslategrey_"), LOADERS[0])
    assert err.line is not None and err.col is not None and err.source_line


@pytest.mark.parametrize("loader", LOADERS)
def test_duplicate_keys_and_alias_bombs_with_each_loader(loader):
    assert "duplicate key 'version'" in first(DRAGON.replace("version: 1\n", "version: 1\nversion: 1\n"),
                                              loader).message
    bomb = "a: &a ['x','x','x','x','x','x','x','x','x','x']\n"
    for i in range(1, 9):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    assert "too large" in first(bomb, loader).message
    assert "invalid YAML" in first("!!python/object/apply:os.system ['echo pwned']\n", loader).message


def test_spec_files_over_the_size_limit_are_refused_without_reading_them_whole(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.write(DRAGON.encode())
        fh.write(b"#" * (MAX_SPEC_BYTES + 1000))
    t0 = time.perf_counter()
    res = run("validate", path, tmp_path / "none.yaml")
    assert res.exit_code == 1 and "big.yaml: error:" in clean(res) and "8 MiB" in res.stderr
    assert time.perf_counter() - t0 < 60  # a hang guard, not a timing: the bound only catches a stall
    bad = profile(tmp_path, "#" * (MAX_SPEC_BYTES + 10) + "\n")
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", tmp_path / "good.yaml", "-p", bad, "-o", tmp_path / "out")
    assert res.exit_code == 1 and "8 MiB" in clean(res)
    with pytest.raises(SpecError, match="8 MiB"):
        loads_spec("#" * (MAX_SPEC_BYTES + 1))


def test_stdin_spec_is_bounded_too():
    res = run("validate", "-", input=DRAGON)
    assert res.exit_code == 0, res.stderr
    res = run("validate", "-", input=b"#" * (MAX_SPEC_BYTES + 1))
    assert res.exit_code == 1 and "8 MiB" in clean(res)


# --- 6. YAML 1.2 scalars ----------------------------------------------------------------------

@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("written, read", [("5e0", 5.0), ("1e-3", 0.001), ("0o17", 15), ("0x1F", 31), ("17", 17),
                                           ("+2.5", 2.5), (".5", 0.5), ("2.", 2.0), ("1E2", 100.0)])
def test_yaml_1_2_numbers(loader, written, read):
    text = DRAGON.replace("distance_to_viewer: 7.0", f"distance_to_viewer: {written}", 1)
    region = next(r for r in loads_spec(text, **({"loader": loader} if loader else {})).regions
                  if r.description == "A mighty dragon.")
    assert region.distance_to_viewer == read and type(region.distance_to_viewer) is type(read)


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("written, hint", [
    ("017", "write 17, or 0o17"), ("-017", "write -17"), ("00", "write 0"), ("1:30", "90"),
    ("1_000", "1000"), ("1_000.5", "1000.5"), ("0b101", "5"), ("'7'", "without quotes"), ('"2.5"', "without quotes"),
])
def test_yaml_1_1_numbers_are_located_errors_that_say_how_to_write_them(loader, written, hint):
    text = DRAGON.replace("distance_to_viewer: 7.0", f"distance_to_viewer: {written}", 1)
    err = first(text, loader)
    line = text.splitlines().index(next(l for l in text.splitlines() if f"distance_to_viewer: {written}" in l)) + 1
    assert err.line == line and hint in err.message, err.message


@pytest.mark.parametrize("written", ["9" * 5000 + ":30", "'" + "9" * 5000 + "'", "0b" + "1" * 20000, "1_" * 3000 + "1"])
def test_long_numbers_in_text_where_a_number_is_expected_are_errors_not_crashes(written):
    err = first(DRAGON.replace("distance_to_viewer: 7.0", f"distance_to_viewer: {written}", 1))
    assert "expected a number" in err.message and len(err.message) < 500


@pytest.mark.parametrize("word", ["yes", "on", "Off", "no", "y", "NO"])
def test_yaml_1_1_booleans_are_text_with_a_hint_where_a_boolean_is_expected(tmp_path, word):
    from omostc.batch.profile import load_profile

    path = tmp_path / "sd.yaml"
    path.write_text(f"version: 1\nbackend: sdxl\nmodel: builtin:tiny-sdxl\noffload: {word}\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_profile(str(path))
    err = info.value.errors[0]
    assert err.line == 4 and "true or false" in err.message
    (tmp_path / "good.yaml").write_text(DRAGON, encoding="utf-8")
    res = run("render", tmp_path / "good.yaml", "-p", path, "-o", tmp_path / "out")
    assert res.exit_code == 1 and "sd.yaml:4:" in clean(res) and "true or false" in res.stderr
    path.write_text("version: 1\nbackend: sdxl\nmodel: builtin:tiny-sdxl\noffload: true\n", encoding="utf-8")
    assert load_profile(str(path)).options.offload is True


def test_1_1_only_forms_are_plain_text_in_text_fields():
    for word in ("yes", "on", "1:30", "1_000", "2001-12-14", "=", "0b11"):
        text = re.sub(r"(?m)^  tags: .*$", f"  tags: {word}", DRAGON, count=1)
        assert loads_spec(text).global_description.tags == word


@pytest.mark.parametrize("value", ["017", "1:30", "yes", "on", "0o17", "5e0", "1_000", "0x1F", ".inf", "null", "~",
                                   "True", "NO", "1e-3", "0b11", "2001-12-14", "=", "<<", "-017", "+1", ".5", "1."])
def test_strings_that_look_like_numbers_stay_quoted_and_round_trip(value):
    scene = loads_spec(DRAGON)
    scene.global_description.tags = value
    scene.regions[0].description = value
    text = dumps_spec(scene)
    assert loads_spec(text) == scene
    assert yaml.safe_load(text)["global"]["tags"] == value  # and YAML 1.1 tools read the same
    assert loads_spec(dumps_spec(scene, dumper=yamlio._PySpecDumper)) == scene


number_like = st.from_regex(r"\A[-+]?[0-9_:.oxbeE]{1,8}\Z") | st.sampled_from(
    ["yes", "no", "on", "off", "y", "n", "True", "NULL", "~", ".NaN", "-.inf", "<<", "="])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(number_like)
def test_any_number_like_string_round_trips(value):
    scene = loads_spec(DRAGON)
    scene.global_description.tags = value
    assert loads_spec(dumps_spec(scene)).global_description.tags == value


# --- 7. block scalars -------------------------------------------------------------------------

def test_block_scalars_lose_their_trailing_line_break(tmp_path):
    text = DRAGON.replace("  description: A fierce battle between warriors and a dragon.\n",
                          "  description: |\n    A fierce battle between warriors and a dragon.\n\n", 1)
    text = text.replace("  tags: battle", "  tags: >\n    battle", 1)
    assert text != DRAGON
    scene = loads_spec(text)
    assert scene.global_description.description == "A fierce battle between warriors and a dragon."
    assert not scene.global_description.tags.endswith("\n")
    path = tmp_path / "b.yaml"
    path.write_text(text, encoding="utf-8")
    res = run("lower", path)
    assert res.exit_code == 0 and "\\n" not in res.stdout.split('"prefixes"')[1][:400]


# --- 8. fuzzing -------------------------------------------------------------------------------
# ``OMOSTC_FUZZ_EXAMPLES=20000 pytest tests/test_hardening_spec.py -k fuzz`` hunts longer (``make fuzz``).

FUZZ_EXAMPLES = int(os.environ.get("OMOSTC_FUZZ_EXAMPLES", "1200"))  # specs; profiles and PNG chunks a third
FUZZ_SECONDS = 10  # per input, generous: a 20 kB spec loads in milliseconds
SEEDS = [p.read_text(encoding="utf-8") for p in sorted((REPO / "specs").glob("*.yaml"))]
PROFILES = [p.read_text(encoding="utf-8") for p in sorted((REPO / "omostc" / "data" / "profiles").glob("*.yaml"))]
NASTY = ['"\\ud800"', '"\\U0000dfff"', '"\\U00110000"', "9" * 5000, "[" + "9" * 5000 + "]", "[0x" + "f" * 5000 + "]",
         "[" * 300, "[" * 1200, "{a: " * 1200, "- " * 1200, "\n" + "".join(" " * i + "a:\n" for i in range(1200)),
         "&a x", "*a", "*zz", "&a [*a]", "&a {k: *a}", "!!python/object:os.system", "!!binary aGk=",
         "!!set {a}", "!!timestamp 2001-13-45", "!!float x", "!!bool x", "!!int 1_0", "!foo x", "! 017", "<<: *a",
         "? [a]\n: b", "? {a: 1}\n: b", "\x00", "\x1b[2J", "\t", "\ud800", "017", "08", "1:30", "1_000", "0b11",
         "0o" + "7" * 50, "5e0", ".inf", ".nan", "1e99999", "yes", "~", "null", "version: 1", "\n---\n", "...",
         "%YAML 1.1\n---\n", "|+\n  x\n\n", ">-\n x", "\u2028", "\x85", "\ufeff", "'", '"', "#", ":", "-", "\\",
         "\r", "1: x", "null: x", "~: y", "true: z", "description: |\n  a\n", "width: 896.0", "seed: 7.5",
         "box: {x: 1.0, y: 2, w: 3, h: 4}"]


@st.composite
def mutated(draw, seeds: list[str]) -> str:
    """A seed document with 1 to 6 edits: characters inserted, deleted or replaced, a nasty
    fragment inserted, a line duplicated (duplicate keys) or indented (tabs, bad nesting)."""
    text = draw(st.sampled_from(seeds))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace", "nasty", "nasty", "line"]))
        if edit == "insert":
            text = text[:at] + draw(st.text(max_size=5)) + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)):]
        elif edit == "replace":
            text = text[:at] + draw(st.characters()) + text[at + 1:]
        elif edit == "nasty":
            text = text[:at] + draw(st.sampled_from(NASTY)) + text[at:]
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, draw(st.sampled_from(["", "\t", "  ", "- "])) + lines[i])
            text = "".join(lines)
    return text


def assert_diagnostics_printable(exc) -> None:
    assert exc.diagnostics
    for d in exc.diagnostics:
        shown = d.format()
        shown.encode("utf-8")  # no lone surrogates
        assert len(shown) < 3000


FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_LESS = settings(FUZZ, max_examples=max(1, FUZZ_EXAMPLES // 3))


@FUZZ
@given(mutated(SEEDS), st.sampled_from(LOADERS))
def test_fuzz_the_spec_loader(text, loader):
    """A mutated spec loads as a Scene (which writes out and reads back the same) or raises
    SpecError with printable, located diagnostics; nothing else, and in bounded time."""
    t0 = time.perf_counter()
    try:
        scene = loads_spec(text, file="fuzz.yaml", **({"loader": loader} if loader else {}))
    except SpecError as exc:
        assert_diagnostics_printable(exc)
    else:
        written = dumps_spec(scene)
        written.encode("utf-8")  # no lone surrogates got in
        assert loads_spec(written) == scene
    assert time.perf_counter() - t0 < FUZZ_SECONDS


@FUZZ_LESS
@given(mutated(PROFILES))
def test_fuzz_the_profile_loader(text):
    from omostc.batch.profile import profile_from_dict, profile_validator

    t0 = time.perf_counter()
    try:
        data = yamlio.load_validated(text, file="p.yaml", validator=profile_validator(), empty="empty")
        profile_from_dict("p", data)
    except SpecError as exc:
        assert_diagnostics_printable(exc)
    assert time.perf_counter() - t0 < FUZZ_SECONDS


@FUZZ_LESS
@given(mutated([json.dumps({"seed": 7, "model": "m", "backend": "preview", "omostc": "0.1",
                            "options": {"width": 896, "height": 1152, "steps": 25, "cfg": 5.0,
                                        "negative_prompt": "x", "sketch_strength": None,
                                        "highres": {"scale": 1.0, "steps": 20, "denoise": 0.4}},
                            "backend_options": {}})]))
def test_fuzz_the_png_settings_chunk(render):
    from omostc.batch.outputs import provenance_from_text
    from omostc.diagnostics import OmostcError

    try:
        provenance_from_text(DRAGON, render, file="x.png")
    except OmostcError as exc:
        assert_diagnostics_printable(exc)
