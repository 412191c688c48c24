"""The example specs: valid, equal to what their sources compile to, and their IR golden."""

from __future__ import annotations

from dataclasses import replace

import pytest
from refresh_golden import GOLDEN, REPO, golden_ir

from omostc import compile_file, load_spec

SPECS = sorted((REPO / "specs").glob("*.yaml"))


def test_there_are_example_specs():
    assert len(SPECS) >= 5


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_spec_matches_its_source(spec, monkeypatch):
    monkeypatch.chdir(REPO)
    scene = load_spec(spec)
    assert scene.provenance and scene.provenance.source, "example specs record their source"
    compiled = compile_file(scene.provenance.source).scene
    assert replace(compiled, provenance=None) == replace(scene, provenance=None)
    assert spec.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=../schemas/scene.schema.json\n")


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_golden_ir(spec):
    golden = GOLDEN / f"{spec.stem}.ir.json"
    assert golden.is_file(), f"no golden file for {spec.name}: run `make golden` and review the diff"
    assert golden_ir(spec) == golden.read_text(encoding="utf-8"), \
        f"IR of {spec.name} changed: run `make golden` and review the diff"


def test_no_stale_golden_files():
    assert {p.name for p in GOLDEN.glob("*.ir.json")} == {f"{s.stem}.ir.json" for s in SPECS}
