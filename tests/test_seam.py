"""The backend seam, one definition of each setting, the API behind every command, profiles as
package data, and one error model."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO
from PIL import Image

import omostc
from omostc.backends import registry
from omostc.batch.profile import load_profile, profile_from_dict
from omostc.cli import main
from omostc.diagnostics import Diagnostic, OmostcError, SettingsError, SpecError
from omostc.settings import check, click_options, fields_of, schema_of
from omostc.spec.render import RenderOptions, RenderSettings

DRAGON = str(REPO / "specs" / "dragon.yaml")


def render(*args: str):
    return CliRunner().invoke(main, ["render", *args])


# --- settings: one definition, every source checked the same way -----------------------------

FLOAT_FLAGS = ["--cfg", "--sketch-strength", "--highres-scale", "--highres-denoise"]


@pytest.mark.parametrize("flag", FLOAT_FLAGS)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_flags_are_usage_errors_before_anything_loads(tmp_path, flag, value):
    res = render(DRAGON, "-p", "tiny", flag, value, "-o", str(tmp_path / "out"))
    assert res.exit_code == 2 and "finite number" in res.stderr, res.output
    assert not (tmp_path / "out").exists()  # nothing ran, no folder, no manifest


@pytest.mark.parametrize("args,words", [
    (["--width", "100"], "multiple of 64"), (["--width", "32"], "at least 64"), (["--steps", "0"], "at least 1"),
    (["--cfg", "101"], "at most 100"), (["--sketch-strength", "0"], "at least 0.01"),
    (["--highres-scale", "9"], "at most 8"), (["--dtype", "fp8"], "fp8"),
])
def test_out_of_range_flags_are_usage_errors(tmp_path, args, words):
    res = render(DRAGON, "-p", "tiny", *args, "-o", str(tmp_path / "out"))
    assert res.exit_code == 2 and words in res.stderr, res.output


def test_backend_options_the_backend_lacks_and_bad_samplers_fail_before_loading(tmp_path):
    res = render(DRAGON, "--vae", "x", "-o", str(tmp_path / "a"))  # the preview profile has no VAE
    assert res.exit_code == 2 and "--vae: not an option of the 'preview' backend" in res.stderr
    res = render(DRAGON, "-p", "tiny", "--sampler", "EulerDiscreteSchedular", "-o", str(tmp_path / "b"))
    assert res.exit_code == 2 and "did you mean 'EulerDiscreteScheduler'" in res.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_every_source_of_a_setting_is_checked_by_the_same_rules(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text((REPO / "specs" / "dragon.yaml").read_text() + "render:\n  cfg: .nan\n")
    res = render(str(spec), "-o", str(tmp_path / "o"))
    assert res.exit_code == 1 and "render.cfg: must be a finite number" in res.stderr
    profile = tmp_path / "p.yaml"
    profile.write_text("version: 1\nbackend: preview\nrender:\n  steps: .inf\n")
    with pytest.raises(SpecError, match="finite"):
        load_profile(str(profile))
    profile.write_text("version: 1\nbackend: preview\ndtype: fp16\n")
    with pytest.raises(SpecError, match="dtype: an option of the .sdxl. and .flux. backends, not of .preview."):
        load_profile(str(profile))
    with pytest.raises(SettingsError, match="at most 1000"):
        profile_from_dict("x", {"backend": "preview", "render": {"steps": 5000}})


def test_a_png_chunk_with_settings_out_of_range_fails_alone(tmp_path):
    out = tmp_path / "out"
    assert render(DRAGON, "-o", str(out), "--width", "64", "--height", "64", "-q").exit_code == 0
    good = out / "dragon" / "12345.png"
    image = Image.open(good)
    record = json.loads(image.text["omostc.render"])
    record["options"]["width"] = 100000
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in image.text.items():
        info.add_itxt(key, json.dumps(record) if key == "omostc.render" else value)
    bad = tmp_path / "bad" / "x.png"
    bad.parent.mkdir()
    image.save(bad, pnginfo=info)
    res = render("--from-png", str(bad), "--from-png", str(good), "-o", str(tmp_path / "again"))
    assert res.exit_code == 1 and "at most 8192" in res.stderr
    assert (tmp_path / "again" / "dragon" / "12345.png").is_file()


def test_schemas_and_flags_derive_from_the_declarations():
    props = schema_of(RenderSettings)["properties"]
    for f, _, s in fields_of(RenderOptions):
        assert f.name in props and props[f.name]["description"] == (s.help if f.name != "highres" else
                                                                    props[f.name]["description"])
    assert props["width"]["multipleOf"] == 64 and props["cfg"]["maximum"] == 100
    flags = {o.__closure__ is None or True for o in click_options(RenderOptions)}
    assert flags  # decorators made
    res = CliRunner().invoke(main, ["render", "--help"])
    for line in ("--highres-scale", "--sketch-strength", "--sampler", "--dtype", "--backend"):
        assert line in res.output
    scene_schema = json.loads((REPO / "schemas" / "scene.schema.json").read_text())
    region = scene_schema["properties"]["regions"]["items"]
    assert region["properties"]["distance_to_viewer"]["exclusiveMinimum"] == 0
    assert set(region["required"]) >= {"distance_to_viewer", "description", "color"}


def test_settings_check_rejects_nan_in_nested_dataclasses():
    options = RenderOptions()
    options.highres.denoise = math.nan
    with pytest.raises(SettingsError, match="highres.denoise must be a finite number"):
        check(options)


# --- the backend seam ----------------------------------------------------------------------

def test_registry_entries_are_complete_and_light():
    assert registry.names()[0] == registry.DEFAULT
    for entry in registry.entries().values():
        assert dataclasses.is_dataclass(entry.options) and entry.summary
        entry.options()  # every option has a default
        for _, _, s in fields_of(entry.options):
            assert s.help and s.section in ("load", "render")
    out = subprocess.run([sys.executable, "-c", "import sys, omostc.backends.registry as r; r.entries(); "
                          "print([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules])"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    with pytest.raises(SettingsError, match="did you mean 'sdxl'"):
        registry.get("sdx")


def test_png_parameters_say_what_the_backend_did(tmp_path):
    assert render(DRAGON, "-o", str(tmp_path), "--width", "64", "--height", "64", "-q").exit_code == 0
    text = Image.open(tmp_path / "dragon" / "12345.png").text
    assert "Sampler: none (layout preview)" in text["parameters"] and "Backend: preview" in text["parameters"]
    assert "DPM++" not in text["parameters"]
    record = json.loads(text["omostc.render"])
    assert record["backend"] == "preview" and record["backend_options"] == {}


# --- profiles as package data ---------------------------------------------------------------

def test_profiles_command_from_another_folder_and_project_profiles_shadow(tmp_path):
    out = subprocess.run([sys.executable, "-m", "omostc.cli", "profiles"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    names = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert {"realvisxl-v4", "sdxl-base", "tiny", "preview"} <= set(names)
    assert "SG161222/RealVisXL_V4.0" in names["realvisxl-v4"] and "shipped with omostc" in names["sdxl-base"]
    (tmp_path / "runners").mkdir()
    (tmp_path / "runners" / "tiny.yaml").write_text("version: 1\nbackend: preview\ndescription: mine\n")
    out = subprocess.run([sys.executable, "-m", "omostc.cli", "profiles", "--json"], capture_output=True,
                         text=True, cwd=tmp_path, timeout=60)
    rows = {r["name"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["tiny"]["backend"] == "preview" and rows["tiny"]["defined"].endswith("runners/tiny.yaml")
    res = CliRunner().invoke(main, ["render", DRAGON, "-p", "realvisxl", "-o", str(tmp_path / "o")])
    assert res.exit_code == 1 and "did you mean 'realvisxl-v4'" in res.stderr


# --- the API for every command --------------------------------------------------------------

def test_render_batch_is_the_render_command(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n")
    seen = []
    report = omostc.render_batch([DRAGON, str(bad)], out_dir=tmp_path / "out", settings={"width": 64, "height": 64},
                                 images=2, on_result=seen.append)
    assert isinstance(report, omostc.BatchReport)
    assert report.counts == {"rendered": 2, "skipped": 0, "failed": 1} and report.exit_status == 1
    assert [r.source for r in report.failed] == [str(bad)] and len(seen) == 3
    assert report.manifest.is_file() and report.profile.name == "preview"
    again = omostc.render_batch([DRAGON], out_dir=tmp_path / "out", settings={"width": 64, "height": 64}, images=2)
    assert again.counts == {"rendered": 0, "skipped": 2, "failed": 0} and again.exit_status == 0
    with pytest.raises(SettingsError):
        omostc.render_batch([DRAGON], out_dir=tmp_path / "x", settings={"cfg": math.nan})
    with pytest.raises(SettingsError, match="not an option"):
        omostc.render_batch([DRAGON], out_dir=tmp_path / "x", backend_options={"dtype": "fp16"})


class EchoBackend:
    """A chat backend that answers with a fixed canvas."""

    model = "echo"

    def __init__(self, answer: str):
        self.answer = answer
        self.seen: list = []

    def stream(self, messages, sampling):
        self.seen.append(list(messages))
        yield self.answer


CANVAS = (REPO / "specs" / "src" / "dragon.md").read_text(encoding="utf-8")


def test_generate_edit_and_chat_sessions_without_a_terminal():
    backend = EchoBackend(CANVAS)
    answer = omostc.generate("a dragon", backend=backend)
    assert answer.scene.provenance.prompt == "a dragon" and answer.generation.attempts == 1
    edited = omostc.edit(answer.scene, "make it gold", backend=backend)
    assert backend.seen[-1][-1].content == "make it gold" and edited.scene.regions
    chat = omostc.open_session(omostc.LLMSettings(model="omost-x"), backend=backend)
    chat.ask("a dragon")
    assert chat.scene is not None and chat.undo() and chat.scene is None


# --- one error model ------------------------------------------------------------------------

def test_every_error_carries_diagnostics():
    import omostc.diagnostics as d

    for name in ("InputError", "CompileError", "SpecError", "SettingsError", "ProvenanceError", "ModelError",
                 "RenderError", "LLMError"):
        assert issubclass(getattr(d, name), OmostcError)
    error = d.ModelError("cannot load", file="model.safetensors")
    assert error.diagnostics == [Diagnostic("error", "cannot load", file="model.safetensors")]
    assert str(error) == "cannot load" and error.summary() == "cannot load"
    assert d.RenderError("x").diagnostics[0].format() == "error: x"
