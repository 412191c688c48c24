"""compile -> decompile -> compile is the identity on specs, and so is YAML out and back in."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from conftest import compiling_corpus, needs_shared
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omostc import check_scene, compile_canvas, compile_file, decompile, dumps_spec, loads_spec
from omostc.spec.model import Box, GlobalDescription, Region, Scene
from omostc.spec.tables import AREAS, COLORS, LOCATIONS, OFFSETS
from omostc.spec.yamlio import _PySpecDumper

EXAMPLES = int(os.environ.get("OMOSTC_HYPOTHESIS_EXAMPLES", "300"))  # raise for a longer hunt

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
texts = st.lists(text, max_size=4)
colors = st.sampled_from(sorted(COLORS))
depths = st.one_of(st.integers(1, 10**6), st.floats(min_value=1e-9, max_value=1e12, allow_nan=False))
names = st.one_of(st.none(), text.filter(lambda s: s.strip() != ""))
boxes = st.builds(Box, x=st.integers(0, 90), y=st.integers(0, 90), w=st.integers(1, 90), h=st.integers(1, 90))


@st.composite
def regions(draw) -> Region:
    placed = draw(st.booleans())
    return Region(
        name=draw(names),
        location=draw(st.sampled_from(list(LOCATIONS))) if placed else None,
        offset=draw(st.sampled_from(list(OFFSETS))) if placed else None,
        area=draw(st.sampled_from(list(AREAS))) if placed else None,
        box=None if placed else draw(boxes),
        distance_to_viewer=draw(depths),
        description=draw(text), detailed_descriptions=draw(texts), tags=draw(text),
        atmosphere=draw(text), style=draw(text), quality_meta=draw(text), color=draw(colors),
        feather=draw(st.one_of(st.none(), st.integers(0, 90), st.floats(0, 90))),
        weight=draw(st.one_of(st.none(), st.floats(0.01, 100), st.integers(1, 100))),
    )


scenes = st.builds(
    Scene,
    global_description=st.builds(GlobalDescription, description=text, detailed_descriptions=texts,
                                 tags=text, color=colors),
    regions=st.lists(regions(), max_size=5),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes, st.booleans())
def test_decompile_then_compile_is_identity(scene, fence):
    check_scene(scene)
    code = decompile(scene, fence=fence)
    assert compile_canvas(code).scene == scene


@settings(max_examples=EXAMPLES, deadline=None)
@given(scenes)
def test_yaml_round_trip_is_identity(scene):
    text = dumps_spec(scene)
    assert loads_spec(text) == scene
    assert loads_spec(dumps_spec(scene, dumper=_PySpecDumper)) == scene  # the fallback emitter too


@needs_shared
@pytest.mark.parametrize("path", compiling_corpus(), ids=lambda p: p.name)
def test_corpus_round_trips(path):
    scene = compile_file(path).scene
    bare = replace(scene, provenance=None)
    assert compile_canvas(decompile(bare)).scene == bare
    assert compile_canvas(decompile(bare, fence=True)).scene == bare
    assert loads_spec(dumps_spec(scene)) == scene


def test_decompile_writes_the_models_style():
    scene = compile_canvas(
        "canvas = Canvas()\ncanvas.set_global_description(description='A.', detailed_descriptions=[\"It's.\"],"
        " tags='t', HTML_web_color_name='red')\ncanvas.add_local_description('on the left', 'no offset',"
        " 'a small square area', 5.0, 'A mighty dragon.', [], 't', 'a', 's', 'q', 'firebrick')\n"
    ).scene
    code = decompile(scene)
    assert code.startswith("# Initialize the canvas\ncanvas = Canvas()\n\n# Set a global description for the canvas\n")
    assert "        \"It's.\",\n" in code
    assert "\n# Add a mighty dragon.\ncanvas.add_local_description(\n    location='on the left',\n" in code
    assert "    distance_to_viewer=5.0,\n" in code and "    detailed_descriptions=[],\n" in code
    assert decompile(scene, fence=True).startswith("```python\n") and decompile(scene, fence=True).endswith("\n```")
