"""Batch outputs: confined to OUT, one output per input, and exact re-renders (issue 13)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO
from PIL import Image

from omostc.batch.runner import MANIFEST
from omostc.cli import main

DRAGON = REPO / "specs" / "dragon.yaml"
CABIN = REPO / "specs" / "mountain-cabin.yaml"
SMALL = ["--width", "64", "--height", "64"]
TINY = [*SMALL, "--steps", "2", "-p", "tiny"]


def render(*args):
    return CliRunner().invoke(main, ["render", *map(str, args)])


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


def inside(path: Path, folder: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def render_chunk(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.info["omostc.render"])


# --- outputs confined to OUT ------------------------------------------------------------------

def test_a_spec_named_dots_renders_inside_out_and_the_sweep_stays_inside(tmp_path):
    specs, out = tmp_path / "in", tmp_path / "work" / "out"
    specs.mkdir()
    out.mkdir(parents=True)
    shutil.copy(DRAGON, specs / "...yaml")
    shutil.copy(DRAGON, specs / "..yaml")
    editor = tmp_path / "work" / ".my-editor.tmp"
    editor.write_text("keep me")
    res = render(specs / "...yaml", specs / "..yaml", "-o", out, *SMALL, "-q")
    assert res.exit_code == 0, res.output
    assert editor.read_text() == "keep me"
    assert not list((tmp_path / "work").glob("*.png")) and not list(tmp_path.glob("*.png"))
    written = pngs(out)
    assert len(written) == 2 and all(inside(p, out) and p.parent != out for p in written)
    assert {r["name"] for r in rows(out)} == {p.parent.name for p in written}
    again = render(specs / "...yaml", specs / "..yaml", "-o", out, *SMALL, "-q")
    assert "0 rendered, 2 already rendered" in again.stderr and editor.read_text() == "keep me"


def test_from_png_through_a_folder_named_dotdot_stays_inside_out(tmp_path):
    first = tmp_path / "first"
    assert render(DRAGON, "-o", first, *SMALL, "-q").exit_code == 0
    (first / "dragon" / "sub").mkdir()
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    (tmp_path / "work" / ".other.tmp").write_text("x")
    res = render("--from-png", first / "dragon" / "sub" / ".." / "12345.png", "-o", out, "-q")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "work" / ".other.tmp").exists() and not list((tmp_path / "work").glob("*.png"))
    assert [p.relative_to(out).as_posix() for p in pngs(out)] == ["dragon/12345.png"]


def test_the_sweep_removes_only_temporaries_of_dead_writers_inside_out(tmp_path):
    out = tmp_path / "out"
    assert render(DRAGON, "-o", out, *SMALL, "-q").exit_code == 0
    dead = out / "dragon" / ".12345.png.999999999.tmp"  # no such process
    live = out / "dragon" / f".12346.png.{os.getppid()}.tmp"  # a writer still running
    mine = out / "dragon" / "notes.tmp"  # not omostc's
    for path in (dead, live, mine):
        path.write_bytes(b"half")
    assert render(DRAGON, "-o", out, *SMALL, "-q").exit_code == 0
    assert not dead.exists() and live.exists() and mine.exists()


def test_a_symlinked_output_folder_pointing_outside_out_is_refused(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "dragon").symlink_to(elsewhere)
    res = render(DRAGON, CABIN, "-o", out, *SMALL, "-q")
    assert res.exit_code == 1 and "outside" in res.stderr
    assert not list(elsewhere.iterdir()) and (out / "mountain-cabin" / "12345.png").is_file()


@pytest.mark.parametrize("names", [("a/scene.yaml", "b/scene.yaml"), ("scene.yaml", "scene.txt"),
                                   ("Scene.yaml", "scene.yaml"), ("a:b.yaml", "a_b.yaml")])
def test_inputs_with_one_output_name_are_an_error_naming_both_and_reruns_settle(tmp_path, names):
    first, second = (tmp_path / n for n in names)
    for path in (first, second):
        path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DRAGON, first)
    if second.suffix == ".txt":
        second.write_text("canvas = Canvas()\ncanvas.set_global_description(description='x', detailed_descriptions=[],"
                          " tags='x', HTML_web_color_name='red')\n")
    else:
        shutil.copy(CABIN, second)
    out = tmp_path / "out"
    for _ in range(2):
        res = render(first, second, "-o", out, *SMALL, "-q")
        assert res.exit_code == 1
        assert str(first) in res.stderr and str(second) in res.stderr
        assert len(pngs(out)) == 1
    assert "0 rendered, 1 already rendered, 1 failed" in res.stderr
    assert pngs(out)[0].read_bytes() == pngs(out)[0].read_bytes()
    assert sorted(r["status"] for r in rows(out)) == ["failed", "skipped"]


def test_which_input_keeps_a_name_depends_on_the_command_line_alone(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    broken, good = tmp_path / "a" / "scene.yaml", tmp_path / "b" / "scene.yaml"
    broken.write_text("version: 1\n")
    shutil.copy(DRAGON, good)
    out = tmp_path / "out"
    res = render(broken, good, "-o", out, *SMALL, "-q")
    assert res.exit_code == 1 and "already that of" in res.stderr and not pngs(out)
    shutil.copy(DRAGON, broken)  # fixed: it renders, and the folder was never the other one's
    res = render(broken, good, "-o", out, *SMALL, "-q")
    assert res.exit_code == 1 and "1 rendered, 0 already rendered, 1 failed" in res.stderr and len(pngs(out)) == 1
    assert f"{good}: error: its output name 'scene' (in the output folder) is already that of {broken}" in res.stderr
    first = tmp_path / "first"
    assert render(CABIN, "-o", first, *SMALL, "-q").exit_code == 0
    res = render(good, "--from-png", first / "mountain-cabin" / "12345.png", "-o", out, *SMALL, "-q")
    assert res.exit_code == 0  # another name
    res = render(DRAGON, "--from-png", out / "scene" / "12345.png", "-o", out, *SMALL, "-q")
    assert res.exit_code == 0, res.output  # the PNG's folder is not the spec's
    shutil.copy(DRAGON, tmp_path / "scene.yaml")
    res = render(tmp_path / "scene.yaml", "--from-png", out / "scene" / "12345.png", "-o", out, *SMALL, "-q")
    assert res.exit_code == 1 and "already that of" in res.stderr and str(tmp_path / "scene.yaml") in res.stderr


@pytest.mark.parametrize("stem", ["manifest.jsonl", "manifest.lock", ".hidden", "con", "LPT1", "nul.x", "a\tb"])
def test_names_never_clash_with_bookkeeping_hidden_or_reserved_names(tmp_path, stem):
    spec = tmp_path / f"{stem}.yaml"
    shutil.copy(DRAGON, spec)
    out = tmp_path / "out"
    res = render(spec, "-o", out, *SMALL, "-q")
    assert res.exit_code == 0, res.output
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    assert not folder.name.startswith((".", "manifest.")) and "\t" not in folder.name
    assert folder.name.split(".")[0].upper() not in {"CON", "NUL", "LPT1"}
    assert (out / MANIFEST).is_file()
    assert render(CABIN, "-o", out, *SMALL, "-q").exit_code == 0  # later batches into OUT still work


def test_duplicate_inputs_and_seeds_render_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(DRAGON, "x.yaml")
    os.symlink("x.yaml", "link.yaml")
    res = render("x.yaml", "x.yaml", "./x.yaml", str(tmp_path / "x.yaml"), "--seed", "5", "--seed", "5", "-o", "out",
                 *SMALL, "-q")
    assert res.exit_code == 0, res.output
    assert "1 rendered, 0 already rendered, 0 failed" in res.stderr
    assert len(rows(Path("out"))) == 1
    res = render("x.yaml", "link.yaml", "--seed", "5", "-o", "out", *SMALL, "-q")  # one file, two names
    assert "0 rendered, 1 already rendered, 0 failed" in res.stderr


def test_compile_out_dir_refuses_two_inputs_with_one_output(tmp_path):
    (tmp_path / "c1").mkdir()
    (tmp_path / "c2").mkdir()
    code = ("canvas = Canvas()\ncanvas.set_global_description(description='{}', detailed_descriptions=[], tags='x',"
            " HTML_web_color_name='red')\n")
    (tmp_path / "c1" / "scene.md").write_text("```python\n" + code.format("first") + "```\n")
    (tmp_path / "c2" / "scene.txt").write_text(code.format("second"))
    out = tmp_path / "out"
    for _ in range(2):
        res = CliRunner().invoke(main, ["compile", "-O", str(out), str(tmp_path / "c1" / "scene.md"),
                                        str(tmp_path / "c2" / "scene.txt")])
        assert res.exit_code == 1
        assert "c1/scene.md" in res.stderr and "c2/scene.txt" in res.stderr
        assert [p.name for p in out.iterdir()] == ["scene.yaml"]
        assert "description: first" in (out / "scene.yaml").read_text()
    res = CliRunner().invoke(main, ["compile", "-O", str(out), str(tmp_path / "c1" / "scene.md"),
                                    str(tmp_path / "c1" / "scene.md")])
    assert res.exit_code == 0, res.output  # the same input twice is compiled once


def test_compile_out_dir_names_are_safe(tmp_path):
    code = ("canvas = Canvas()\ncanvas.set_global_description(description='x', detailed_descriptions=[], tags='x',"
            " HTML_web_color_name='red')\n")
    (tmp_path / "...py").write_text(code)
    out = tmp_path / "sub" / "out"
    res = CliRunner().invoke(main, ["compile", "-O", str(out), str(tmp_path / "...py")])
    assert res.exit_code == 0, res.output
    (written,) = out.iterdir()
    assert not written.name.startswith(".") and inside(written, out)


# --- seeds --------------------------------------------------------------------------------------

def seeds_of(out: Path, name: str = "dragon") -> list[int]:
    return sorted(int(p.stem) for p in (out / name).glob("*.png"))


def test_seed_and_images_combine(tmp_path):
    out = tmp_path / "a"
    assert render(DRAGON, "--seed", "5", "--images", "3", "-o", out, *SMALL, "-q").exit_code == 0
    assert seeds_of(out) == [5, 6, 7]
    out = tmp_path / "b"
    assert render(DRAGON, "--seed", "5", "--seed", "100", "--images", "3", "-o", out, *SMALL, "-q").exit_code == 0
    assert seeds_of(out) == [5, 100, 101]
    profile = tmp_path / "p.yaml"
    profile.write_text("version: 1\nbackend: preview\nseeds: [12345]\n")  # as realvisxl-v4 lists its seed
    out = tmp_path / "c"
    assert render(DRAGON, "-p", profile, "--images", "3", "-o", out, *SMALL, "-q").exit_code == 0
    assert seeds_of(out) == [12345, 12346, 12347]
    spec = tmp_path / "seeded.yaml"
    spec.write_text(DRAGON.read_text() + "render:\n  seed: 9\n")
    assert render(spec, "-p", profile, "--images", "2", "-o", tmp_path / "d", *SMALL, "-q").exit_code == 0
    assert seeds_of(tmp_path / "d", "seeded") == [9, 10]


def test_seeds_listed_twice_or_beyond_images_warn(tmp_path):
    out = tmp_path / "o"
    res = render(DRAGON, "--seed", "5", "--seed", "6", "--seed", "5", "--images", "4", "-o", out, *SMALL)
    assert res.exit_code == 0, res.output
    assert seeds_of(out) == [5, 6, 7, 8] and "4 rendered" in res.stderr
    assert "warning" in res.stderr and "seed 5 is listed more than once" in res.stderr
    res = render(DRAGON, "--seed", "1", "--seed", "2", "--images", "1", "-o", tmp_path / "p", *SMALL)
    assert seeds_of(tmp_path / "p") == [1, 2] and "--images 1 is fewer than the 2 seeds" in res.stderr


def test_from_png_warns_that_seeds_and_pixel_settings_do_not_apply(tmp_path):
    first = tmp_path / "first"
    assert render(DRAGON, "-o", first, *SMALL, "-q").exit_code == 0
    res = render("--from-png", first / "dragon" / "12345.png", "--seed", "3", "--images", "2", "--steps", "9", "-o",
                 tmp_path / "again")
    assert res.exit_code == 0, res.output
    assert "warning" in res.stderr and "--seed" in res.stderr and "--images" in res.stderr and "--steps" in res.stderr
    assert seeds_of(tmp_path / "again") == [12345]


def test_render_help_says_how_seeds_combine():
    res = CliRunner().invoke(main, ["render", "--help"])
    assert "--batch-seeds" in res.output and "5, 6, 7" in res.output


# --- exact re-renders ---------------------------------------------------------------------------

@pytest.mark.slow  # loads the SDXL backend's profile four times
def test_from_png_of_a_preview_png_renders_with_the_preview_backend(tmp_path):
    first = tmp_path / "first"
    assert render(DRAGON, "-o", first, *SMALL, "-q").exit_code == 0
    png = first / "dragon" / "12345.png"
    for profile in ([], ["-p", "tiny"], ["--model", "no/such-model"]):
        out = tmp_path / f"again{len(profile)}"
        res = render("--from-png", png, *profile, "-o", out, "-q")
        assert res.exit_code == 0, res.output
        assert (out / "dragon" / "12345.png").read_bytes() == png.read_bytes()
        assert "profile preview" in res.stderr


def test_from_png_together_with_specs_settles(tmp_path):
    first = tmp_path / "first"
    assert render(DRAGON, "-o", first, *SMALL, "-q").exit_code == 0
    out = tmp_path / "out"
    assert render(CABIN, "--from-png", first / "dragon" / "12345.png", "-o", out, *SMALL, "-q").exit_code == 0
    res = render(CABIN, "--from-png", first / "dragon" / "12345.png", "-o", out, *SMALL, "-q")
    assert "0 rendered, 2 already rendered" in res.stderr


def test_the_key_covers_the_render_version(tmp_path, monkeypatch):
    import omostc.batch.runner as runner

    out = tmp_path / "out"
    assert render(DRAGON, "-o", out, *SMALL, "-q").exit_code == 0
    assert "0 rendered" in render(DRAGON, "-o", out, *SMALL, "-q").stderr
    monkeypatch.setattr(runner, "RENDER_VERSION", runner.RENDER_VERSION + 1)
    assert "1 rendered" in render(DRAGON, "-o", out, *SMALL, "-q").stderr


def test_model_fingerprint_of_folders_files_and_hub_ids(tmp_path, monkeypatch):
    from omostc.backends.common.fingerprint import model_fingerprint

    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "w.safetensors").write_bytes(b"1234")
    before = model_fingerprint(str(folder))
    assert before == model_fingerprint(str(folder))
    (folder / "unet" / "w.safetensors").write_bytes(b"12345")
    assert model_fingerprint(str(folder)) != before
    single = tmp_path / "m.safetensors"
    single.write_bytes(b"x")
    one = model_fingerprint(str(single))
    os.utime(single, (time.time() + 10, time.time() + 10))
    assert model_fingerprint(str(single)) != one
    hub = tmp_path / "hf" / "hub" / "models--org--name"
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    assert "abc123" in model_fingerprint("org/name")
    assert model_fingerprint("org/other") == "org/other"  # not in the cache: the id alone


@pytest.mark.slow  # tiny-model renders and model loads
def test_a_model_updated_in_place_renders_again(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "out"
    assert render(DRAGON, *TINY, "--model", model, "-o", out, "-q").exit_code == 0
    assert "0 rendered" in render(DRAGON, *TINY, "--model", model, "-o", out, "-q").stderr
    config = model / "unet" / "config.json"
    config.write_text(config.read_text() + " ")
    assert "1 rendered" in render(DRAGON, *TINY, "--model", model, "-o", out, "-q").stderr


@pytest.mark.slow  # tiny-model renders and model loads
def test_pngs_record_the_resolved_dtype_and_from_png_keys_follow_the_settings_used(tiny_model_dir, tmp_path):
    base = ["--model", tiny_model_dir, *SMALL, "--steps", "2", "--device", "cpu", "-q"]
    out, bf16 = tmp_path / "out", tmp_path / "bf16"
    assert render(DRAGON, *base, "-o", out).exit_code == 0
    fp32_png = out / "dragon" / "12345.png"
    assert render_chunk(fp32_png)["backend_options"]["dtype"] == "fp32"  # the default, as resolved
    fp32_bytes = fp32_png.read_bytes()
    assert render(DRAGON, *base, "--dtype", "bf16", "-o", bf16).exit_code == 0
    bf16_png = bf16 / "dragon" / "12345.png"
    assert render_chunk(bf16_png)["backend_options"]["dtype"] == "bf16"
    res = render("--from-png", bf16_png, "-o", out, "-q")  # the bf16 picture replaces the fp32 one in OUT
    assert res.exit_code == 0 and "1 rendered" in res.stderr
    assert fp32_png.read_bytes() == bf16_png.read_bytes()
    res = render(DRAGON, *base, "-o", out)  # the fp32 batch is not served the bf16 picture
    assert "1 rendered" in res.stderr and fp32_png.read_bytes() == fp32_bytes
    res = render("--from-png", bf16_png, "--processor", "reference", "--dtype", "fp32", "-o", tmp_path / "x")
    assert res.exit_code == 0 and (tmp_path / "x" / "dragon" / "12345.png").read_bytes() == bf16_png.read_bytes()
    assert "--processor, --dtype do not apply to --from-png images" in res.stderr


@pytest.mark.slow  # tiny-model renders and model loads
def test_from_png_renders_each_png_with_its_own_model(tiny_model_dir, tiny_model_with_other_vae, tmp_path):
    first = tmp_path / "first"
    shutil.copy(DRAGON, tmp_path / "a.yaml")
    shutil.copy(DRAGON, tmp_path / "b.yaml")
    common = [*SMALL, "--steps", "2", "--device", "cpu", "-o", first, "-q"]
    assert render(tmp_path / "a.yaml", "--model", tiny_model_dir, *common).exit_code == 0
    assert render(tmp_path / "b.yaml", "--model", tiny_model_with_other_vae, *common).exit_code == 0
    a, b = first / "a" / "12345.png", first / "b" / "12345.png"
    out = tmp_path / "out"
    res = render("--from-png", a, "--from-png", b, "-o", out)
    assert res.exit_code == 0, res.output
    assert (out / "a" / "12345.png").read_bytes() == a.read_bytes()
    assert (out / "b" / "12345.png").read_bytes() == b.read_bytes()
    assert render_chunk(out / "b" / "12345.png")["model"] == str(tiny_model_with_other_vae)
    assert str(tiny_model_dir) in res.stderr and str(tiny_model_with_other_vae) in res.stderr  # the summary


@pytest.mark.slow  # tiny-model renders and model loads
def test_batch_seeds_omost_matches_omosts_pipeline_for_image_2(tiny_model_dir, tmp_path):
    torch = pytest.importorskip("torch")
    import omost_pipeline_reference as reference
    import omost_reference as omost

    from omostc import decompile, load_spec
    from omostc.backends.sdxl.attention import latent_resolutions
    from omostc.backends.sdxl.models import load_sdxl

    out = tmp_path / "out"
    width, height, steps, seed = 128, 64, 3, 7
    res = render(DRAGON, "--model", tiny_model_dir, "--device", "cpu", "--width", width, "--height", height, "--steps",
                 steps, "--seed", seed, "--images", "3", "--batch-seeds", "omost", "-o", out, "-q")
    assert res.exit_code == 0, res.output
    second = out / "dragon" / f"{seed + 1}.png"
    chunk = render_chunk(second)
    assert chunk["noise"] == {"seed": seed, "index": 1, "batch": 3} and chunk["options"]["batch_seeds"] == "omost"
    model = load_sdxl(tiny_model_dir, dtype="fp32", device="cpu")
    canvas_outputs = omost.run_program(decompile(load_spec(DRAGON))).process()
    with torch.no_grad():
        _, image = reference.render_like_omost(
            model, canvas_outputs, width=width, height=height, steps=steps, cfg=5.0, seed=seed,
            negative_prompt="lowres, bad anatomy, bad hands, cropped, worst quality", resolutions=latent_resolutions,
            batch=(3, 1))
        _, separate = reference.render_like_omost(
            model, canvas_outputs, width=width, height=height, steps=steps, cfg=5.0, seed=seed + 1,
            negative_prompt="lowres, bad anatomy, bad hands, cropped, worst quality", resolutions=latent_resolutions)
    assert np.abs(pixels(second) - image.astype(np.int16)).max() <= 1
    assert np.abs(image.astype(int) - separate.astype(int)).max() > 10  # the two semantics do differ
    again = tmp_path / "again"
    res = render("--from-png", second, "-o", again, "-q")
    assert res.exit_code == 0, res.output
    assert (again / "dragon" / f"{seed + 1}.png").read_bytes() == second.read_bytes()


def test_batch_seeds_omost_is_accepted_by_the_preview_backend_and_extra_seeds_warn(tmp_path):
    out = tmp_path / "o"
    res = render(DRAGON, "--batch-seeds", "omost", "--images", "2", "-o", out, *SMALL, "-q")
    assert res.exit_code == 0, res.output
    assert seeds_of(out) == [12345, 12346]
    assert render_chunk(out / "dragon" / "12346.png")["noise"] == {"seed": 12345, "index": 1, "batch": 2}
    res = render(DRAGON, "--batch-seeds", "omost", "--seed", "5", "--seed", "9", "--images", "2", "-o", tmp_path / "p",
                 *SMALL)
    assert res.exit_code == 0 and seeds_of(tmp_path / "p") == [5, 6] and "(9) are not used" in res.stderr


# --- the tiny model's build ---------------------------------------------------------------------

def test_built_once_removes_stale_build_temporaries_but_not_live_ones(tmp_path, monkeypatch):
    from omostc.backends.common.cache import built_once

    monkeypatch.setenv("OMOSTC_CACHE", str(tmp_path))
    host = os.uname().nodename
    dead = tmp_path / f".m-{host}-999999999-abc"
    live = tmp_path / f".m-{host}-{os.getppid()}-def"
    old = tmp_path / ".m-old_style"
    for folder in (dead, live, old):
        folder.mkdir()
        (folder / "half.bin").write_bytes(b"x")
    stale = time.time() - 2 * 24 * 3600
    os.utime(old, (stale, stale))
    fresh_legacy = tmp_path / ".m-recent_style"
    fresh_legacy.mkdir()

    def build(folder: Path) -> None:
        (folder / "model_index.json").write_text("{}")

    target = built_once("m", build)
    assert (target / "model_index.json").is_file()
    assert not dead.exists() and not old.exists() and live.exists() and fresh_legacy.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m-") and p not in (live, fresh_legacy)]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="zombies are seen through /proc (Linux)")
def test_a_killed_writer_not_yet_waited_for_counts_as_gone(tmp_path):
    import signal
    import subprocess
    import sys

    from omostc.backends.common.cache import pid_alive

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(proc.pid) is True
        proc.send_signal(signal.SIGKILL)
        deadline = time.time() + 10
        while pid_alive(proc.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert pid_alive(proc.pid) is False  # a zombie until waited for: it writes nothing more
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_from_png_of_a_model_render_is_quiet_with_q(tmp_path):
    """The default profile (preview) needs no model, but a --from-png item brings its own: the
    model libraries' loading bars stay hidden with -q all the same (a fresh process, since the
    libraries' switch is process-wide)."""
    import subprocess
    import sys

    first = render(DRAGON, "-o", tmp_path / "a", *TINY, "-q")
    assert first.exit_code == 0, first.stderr
    png = pngs(tmp_path / "a")[0]
    run = subprocess.run([sys.executable, "-m", "omostc", "render", "--from-png", str(png), "-o",
                          str(tmp_path / "b"), "-q"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "Loading" not in run.stderr and "it/s" not in run.stderr, run.stderr
    assert pngs(tmp_path / "b")[0].read_bytes() == png.read_bytes()


def test_a_model_folder_of_linked_folders_is_fingerprinted_through_the_links(tmp_path):
    """A model assembled from links to its parts' folders (a common way to share a UNet): an
    update of a part behind a link changes the fingerprint; a link loop is walked once."""
    from omostc.backends.common.fingerprint import model_fingerprint

    real = tmp_path / "real" / "unet"
    real.mkdir(parents=True)
    (real / "w.safetensors").write_bytes(b"1234")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "unet").symlink_to(real)
    (linked / "loop").symlink_to(linked)
    before = model_fingerprint(str(linked))
    (real / "w.safetensors").write_bytes(b"123456")
    assert model_fingerprint(str(linked)) != before


def test_one_model_folder_however_spelled_is_one_key_and_model_with_from_png_warns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    from omostc.batch.profile import load_profile, with_overrides

    tiny = load_profile("tiny")
    digests = {with_overrides(tiny, model=spelled).digest() for spelled in ("m", "./m", str(model) + "/")}
    assert len(digests) == 1
    first = render(DRAGON, "-o", tmp_path / "p", "-q")
    assert first.exit_code == 0, first.stderr
    png = pngs(tmp_path / "p")[0]
    res = render("--from-png", png, "--model", "m", "-o", tmp_path / "q")
    assert res.exit_code == 0 and "--model applies to the specs given, not to --from-png images" in res.stderr


def test_a_lock_file_that_is_a_link_is_never_written_through(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("VICTIM")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".omostc.lock").symlink_to(victim)
    res = render(DRAGON, "-o", out, "-q")
    assert res.exit_code == 1 and "link" in res.stderr and "Traceback" not in res.stderr
    assert victim.read_text() == "VICTIM"


def test_prune_dry_run_summary_counts_what_would_go(tmp_path):
    out = tmp_path / "out"
    assert render(DRAGON, CABIN, "-o", out, "-q").exit_code == 0
    res = render(DRAGON, "-o", out, "--prune", "--dry-run", "--log", "json")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["dry_run"] is True and summary["pruned"] == 1
    assert (out / "mountain-cabin" / "12345.png").is_file()


def test_a_png_given_as_a_spec_points_at_from_png(tmp_path):
    out = tmp_path / "out"
    assert render(DRAGON, "-o", out, "-q").exit_code == 0
    png = pngs(out)[0]
    res = render(png, "-o", tmp_path / "again")
    assert res.exit_code == 1 and "give it as --from-png" in res.stderr and "Traceback" not in res.stderr


def test_a_spec_on_standard_input_is_read_as_a_spec(tmp_path):
    """`-` and pipes have no suffix: a spec there (starting with `version:`, after comments) is
    loaded as one, Canvas code as code."""
    for text in (DRAGON.read_text(encoding="utf-8"), (REPO / "specs" / "src" / "dragon.md").read_text("utf-8")):
        out = tmp_path / f"out{len(text)}"
        res = CliRunner().invoke(main, ["render", "-", "-o", str(out), "-q"], input=text)
        assert res.exit_code == 0, res.stderr
        assert len(pngs(out)) == 1
