"""Scene specs as YAML: stable output, safe located loading, and a schema file kept in sync."""

from __future__ import annotations

import json

import pytest
from helpers import GLOBAL, REGION, program

from omostc import SpecError, compile_canvas, dumps_spec, loads_spec
from omostc.spec.schema import schema_json
from omostc.spec.yamlio import schema_ref_for


def scene_yaml(**kw) -> str:
    return dumps_spec(compile_canvas(program(GLOBAL, REGION)).scene, **kw)


def spec_errors(text: str) -> list:
    with pytest.raises(SpecError) as info:
        loads_spec(text, file="s.yaml")
    return info.value.diagnostics


def test_yaml_layout_is_block_style_in_spec_order_with_schema_header():
    text = scene_yaml(schema_ref="../schemas/scene.schema.json")
    lines = text.splitlines()
    assert lines[0] == "# yaml-language-server: $schema=../schemas/scene.schema.json"
    keys = [line.split(":")[0] for line in lines if line and not line.startswith((" ", "#", "-"))]
    assert keys == ["version", "global", "regions"]
    region_keys = [l.strip().lstrip("- ").split(":")[0] for l in lines[lines.index("regions:") + 1:]
                   if l.startswith(("- ", "  ")) and not l.startswith(("    ", "  - "))]
    assert region_keys == ["location", "offset", "area", "distance_to_viewer", "description",
                           "detailed_descriptions", "tags", "atmosphere", "style", "quality_meta", "color"]
    assert "{" not in text and "[" not in text  # block style throughout
    assert loads_spec(text) == compile_canvas(program(GLOBAL, REGION)).scene


def test_unicode_and_awkward_strings_survive():
    awkward = "'null: 1.0 # x \\' \"q\" 猫'"
    text = program(GLOBAL.replace("'A cat on a table.'", "'yes'").replace("'cat, table'", awkward))
    scene = compile_canvas(text).scene
    dumped = dumps_spec(scene)
    assert "猫" in dumped
    assert loads_spec(dumped) == scene


def test_violations_are_reported_at_their_yaml_line():
    text = (scene_yaml().replace("color: orange", "color: orangee")
            .replace("distance_to_viewer: 2.0", "distance_to_viewer: -1"))
    errs = spec_errors(text)
    lines = text.splitlines()
    by_msg = {e.message: e for e in errs}
    colour = next(e for e in errs if "orangee" in e.message)
    assert "did you mean 'orange'" in colour.message and colour.message.startswith("regions[0].color")
    assert lines[colour.line - 1].strip() == "color: orangee"
    depth = next(e for e in errs if "distance_to_viewer" in e.message)
    assert lines[depth.line - 1].strip() == "distance_to_viewer: -1"
    assert all(e.file == "s.yaml" and e.source_line for e in by_msg.values())


def test_unknown_and_missing_keys_and_placement():
    text = scene_yaml().replace("  tags: cat, table\n", "  tagz: cat, table\n")
    errs = spec_errors(text)
    unknown = next(e for e in errs if "unknown key 'tagz'" in e.message)
    assert "did you mean 'tags'" in unknown.message and unknown.source_line.strip().startswith("tagz")
    assert any("missing required key 'tags'" in e.message for e in errs)
    both = scene_yaml().replace("  area: a small square area\n",
                                "  area: a small square area\n  box: {x: 1, y: 2, w: 3, h: 4}\n")
    assert any("either 'location', 'offset' and 'area', or by 'box'" in e.message for e in spec_errors(both))


def test_duplicate_keys_invalid_yaml_and_bad_versions():
    dup = scene_yaml().replace("version: 1\n", "version: 1\nversion: 1\n")
    assert "duplicate key 'version'" in spec_errors(dup)[0].message
    broken = scene_yaml().replace("regions:\n", "regions: [\n")
    err = spec_errors(broken)[0]
    assert err.message.startswith("invalid YAML") and err.line is not None
    assert "version 1, not 2" in spec_errors(scene_yaml().replace("version: 1", "version: 2"))[0].message
    assert "empty file" in spec_errors("")[0].message
    assert "finite" in " ".join(e.message for e in spec_errors(scene_yaml().replace("2.0", ".nan")))


def test_yaml_is_loaded_safely():
    evil = "!!python/object/apply:os.system ['echo pwned']\n"
    err = spec_errors(evil)[0]
    assert "invalid YAML" in err.message and err.line == 1


def test_alias_bomb_is_refused():
    bomb = "a: &a ['x','x','x','x','x','x','x','x','x','x']\n"
    for i in range(1, 9):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    assert "too large" in spec_errors(bomb)[0].message


def test_render_and_provenance_blocks_round_trip():
    text = scene_yaml() + (
        "render:\n  width: 896\n  height: 1152\n  seed: 7\n  steps: 25\n  cfg: 5.0\n"
        "  negative_prompt: lowres\n  highres:\n    scale: 1.5\n    steps: 20\n    denoise: 0.4\n"
        "provenance:\n  prompt: a cat\n  model: omost-llama-3-8b-4bits\n"
        "  conversation:\n    - role: user\n      content: a cat\n"
    )
    scene = loads_spec(text)
    assert scene.render.highres.scale == 1.5 and scene.provenance.conversation[0].content == "a cat"
    assert loads_spec(dumps_spec(scene)) == scene
    bad = text.replace("width: 896", "width: 900")
    assert any("render.width" in e.message for e in spec_errors(bad))


def test_schema_file_in_repo_is_the_generated_schema(repo):
    committed = (repo / "schemas" / "scene.schema.json").read_text(encoding="utf-8")
    assert committed == schema_json(), "schemas/scene.schema.json is stale: run `make schemas`"
    schema = json.loads(committed)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert len(schema["properties"]["global"]["properties"]["color"]["enum"]) == 149


def test_schema_ref_is_relative_to_the_nearest_schemas_folder(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "scene.schema.json").write_text("{}")
    assert schema_ref_for(tmp_path / "specs" / "a.yaml") == "../schemas/scene.schema.json"
    assert schema_ref_for(None).startswith("urn:omostc:")


def test_control_characters_in_yaml_are_located_errors():
    err = spec_errors("version: 1\nglobal: \x00\n")[0]
    assert "invalid YAML" in err.message and err.line == 2
