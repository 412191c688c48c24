"""The batch runner: profiles, incremental and resumable batches, failures that do not stop it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO
from PIL import Image

from omostc import SpecError
from omostc.batch.profile import load_profile, profile_schema_json, shipped_profiles
from omostc.batch.runner import MANIFEST, plan_items, rendered_key
from omostc.cli import main
from omostc.spec.model import RenderSettings

SPECS = sorted((REPO / "specs").glob("*.yaml"))


def render(*args):
    return CliRunner().invoke(main, ["render", *map(str, args)])


def manifest_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


def test_preview_batch_is_incremental(tmp_path):
    specs = tmp_path / "specs"
    shutil.copytree(REPO / "specs", specs, ignore=shutil.ignore_patterns("src"))
    out = tmp_path / "out"
    res = render(*sorted(specs.glob("*.yaml")), "-o", out, "-q")
    assert res.exit_code == 0, res.output
    assert "7 rendered, 0 already rendered, 0 failed" in res.stderr
    pngs = sorted(out.glob("*/12345.png"))
    assert len(pngs) == 7 and all(rendered_key(p) for p in pngs)
    assert Image.open(pngs[0]).size == (896, 1152)  # Omost's default size
    again = render(*sorted(specs.glob("*.yaml")), "-o", out, "-q")
    assert "0 rendered, 7 already rendered" in again.stderr
    dragon = specs / "dragon.yaml"
    dragon.write_text(dragon.read_text().replace("color: firebrick", "color: crimson"))
    edited = render(*sorted(specs.glob("*.yaml")), "-o", out, "-q")
    assert "1 rendered, 6 already rendered" in edited.stderr
    forced = render(dragon, "-o", out, "-q", "--force")
    assert "1 rendered, 0 already rendered" in forced.stderr
    rows = manifest_rows(out)
    assert len(rows) == 7 and {r["status"] for r in rows} == {"rendered", "skipped"}


def test_invalid_spec_is_recorded_and_the_rest_render(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\nglobal: {description: x}\n")
    out = tmp_path / "out"
    res = render(SPECS[0], bad, SPECS[1], "-o", out, "--width", "256", "--height", "256")
    assert res.exit_code == 1
    assert f"failed: {bad}" in res.stderr and "2 rendered, 0 already rendered, 1 failed" in res.stderr
    failed = [r for r in manifest_rows(out) if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["source"] == str(bad) and "missing required key" in failed[0]["error"]
    assert failed[0]["error"].startswith("line 2, column ")  # where, in the manifest too
    # each error once, located, with its line: not repeated by the item report
    assert res.stderr.count("missing required key 'tags'") == 1 and f"{bad}:2:" in res.stderr


def test_json_log(tmp_path):
    res = render(SPECS[0], "-o", tmp_path, "--log", "json", "--width", "128", "--height", "128")
    lines = [json.loads(line) for line in res.stdout.splitlines()]  # the log is stdout (issue 13)
    assert res.exit_code == 0 and lines and lines[0]["status"] == "rendered"


def test_shipped_profiles_validate_and_load_by_name_from_any_folder(tmp_path, monkeypatch):
    shipped = shipped_profiles()
    assert {"preview", "tiny", "realvisxl-v4", "sdxl-base"} <= set(shipped)
    monkeypatch.chdir(tmp_path)  # no runners/ here: the shipped profiles still load by name
    for name, path in shipped.items():
        profile = load_profile(name)
        assert profile == load_profile(str(path)) and profile.origin == "shipped with omostc"
        assert profile.backend in ("sdxl", "preview", "flux")
    assert (REPO / "schemas" / "profile.schema.json").read_text() == profile_schema_json()


def test_bad_profile_is_a_located_error(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: 1\nbackend: sdxl\nrender:\n  stepz: 4\n")
    with pytest.raises(SpecError) as info:
        load_profile(str(bad))
    messages = [d.message for d in info.value.diagnostics]
    assert any("missing required key 'model'" in m for m in messages)
    assert any("unknown key 'stepz'" in m and "did you mean 'steps'" in m for m in messages)
    with pytest.raises(SpecError, match="no profile 'nope'"):
        load_profile("nope")


def test_precedence_flags_over_spec_over_profile(tmp_path):
    from omostc import load_spec

    scene = load_spec(SPECS[0])
    scene.render = RenderSettings(steps=30, width=640)
    profile = load_profile("tiny")
    (item,) = plan_items([("a.yaml", scene)], profile, {"steps": 7})
    assert (item.options.steps, item.options.width, item.options.height, item.seed) == (7, 640, 128, 12345)
    scene.render.seed = 99
    items = plan_items([("a.yaml", scene)], profile, images=3)
    assert [i.seed for i in items] == [99, 100, 101]


@pytest.mark.slow
def test_tiny_profile_kill_9_then_rerun_finishes_cleanly(tmp_path):
    env = {**os.environ, "OMOSTC_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "out"
    args = [sys.executable, "-m", "omostc.cli", "render", *map(str, SPECS), "-p", "tiny", "-o", str(out),
            "--images", "2", "-q"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(out.glob("*/*.png"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("*/*.png")))
    assert 3 <= done_before < 14, "the batch should have been killed part-way"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == 14 and not list(out.glob("**/.*.tmp"))
    for png in pngs:
        with Image.open(png) as image:
            image.load()
            assert image.size == (128, 128) and image.text["omostc.key"]
    rows = manifest_rows(out)
    assert len(rows) == 14 and len({(r["name"], r["seed"]) for r in rows}) == 14
    assert sum(r["status"] == "skipped" for r in rows) >= done_before - 1
    third = subprocess.run(args[:-1], env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "0 rendered, 14 already rendered, 0 failed" in third.stderr


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["preview", "tiny"])
def test_ray_executor_gives_the_local_executors_outputs(tmp_path, profile):
    pytest.importorskip("ray", reason="ray is a dev dependency")
    env = {**os.environ, "OMOSTC_CACHE": str(tmp_path / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
    specs = [str(s) for s in SPECS[:4]]
    common = [sys.executable, "-m", "omostc.cli", "render", *specs, "-p", profile, "--images", "2",
              "--threads", "1", "--width", "256", "--height", "256", "-q"]
    local = subprocess.run([*common, "-o", str(tmp_path / "local")], env=env, capture_output=True, text=True,
                           timeout=600)
    assert local.returncode == 0, local.stderr
    ray = subprocess.run([*common, "-o", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert ray.returncode == 0, ray.stderr
    local_pngs = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").glob("*/*.png"))
    assert len(local_pngs) == 8
    assert local_pngs == sorted(p.relative_to(tmp_path / "ray") for p in (tmp_path / "ray").glob("*/*.png"))
    for rel in local_pngs:
        assert (tmp_path / "local" / rel).read_bytes() == (tmp_path / "ray" / rel).read_bytes()
        assert Image.open(tmp_path / "ray" / rel).size == (256, 256)
    assert len(manifest_rows(tmp_path / "ray")) == 8


def test_a_failing_item_is_recorded_and_the_batch_goes_on(tmp_path):
    from omostc import load_spec
    from omostc.backends.preview.backend import PreviewBackend
    from omostc.batch.executors import LocalExecutor

    class FlakyBackend(PreviewBackend):
        def render(self, ir, options, seeds, progress=None):
            if seeds == [12346]:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().render(ir, options, seeds, progress)

    profile = load_profile("preview")
    items = plan_items([(str(SPECS[0]), load_spec(SPECS[0]))], profile, {"width": 128, "height": 128}, images=3)
    from omostc.batch.runner import run_batch

    results = run_batch(items, LocalExecutor(FlakyBackend), tmp_path, model_name="preview")
    assert [r.status for r in results] == ["rendered", "failed", "rendered"]
    assert "CUDA out of memory" in results[1].error
    rows = manifest_rows(tmp_path)
    assert [r["status"] for r in rows] == ["rendered", "failed", "rendered"]


def test_a_model_that_will_not_load_is_tried_once_and_fails_every_item(tmp_path):
    from omostc import load_spec
    from omostc.batch.executors import LocalExecutor
    from omostc.batch.runner import run_batch

    attempts = []

    def make():
        attempts.append(1)
        raise OSError("cannot load SDXL from nowhere/model")

    items = plan_items([(str(s), load_spec(s)) for s in SPECS[:2]], load_profile("preview"), images=2)
    results = run_batch(items, LocalExecutor(make), tmp_path, model_name="nowhere/model")
    assert len(attempts) == 1 and [r.status for r in results] == ["failed"] * 4
    assert all(r.error == "OSError: cannot load SDXL from nowhere/model" for r in results)


def test_render_command_errors_are_one_line_and_bad_pngs_do_not_stop_the_batch(tmp_path):
    not_png, plain_png = tmp_path / "a.png", tmp_path / "b.png"
    not_png.write_text("x")
    Image.new("RGB", (8, 8)).save(plain_png)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["render", str(SPECS[0]), "--from-png", str(not_png), "--from-png", str(plain_png),
                                    "-o", str(out), "-q"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert f"{not_png}: error: cannot read the image" in res.stderr
    assert f"{plain_png}: error: no omostc provenance in this PNG" in res.stderr
    assert (out / SPECS[0].stem / "12345.png").is_file() and len(manifest_rows(out)) == 3

    res = CliRunner().invoke(main, ["render", str(SPECS[0]), "-p", "no-such-profile", "-o", str(out)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert res.stderr.startswith("no-such-profile: error: no profile 'no-such-profile'")

    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(main, ["render", str(SPECS[0]), "-o", str(blocker / "out")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit) and "error: cannot write" in res.stderr


def test_profile_render_settings_with_highres(tmp_path):
    path = tmp_path / "hr.yaml"
    path.write_text("version: 1\nbackend: preview\nrender:\n  steps: 12\n  highres:\n    scale: 1.5\n")
    profile = load_profile(str(path))
    assert (profile.render.steps, profile.render.highres.scale, profile.render.highres.steps) == (12, 1.5, 20)
