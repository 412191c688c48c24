"""The parser accepts what real models write and rejects everything else with located errors."""

from __future__ import annotations

import pytest
from helpers import GLOBAL, REGION, errors_of, one_error, program

from omostc import compile_canvas
from omostc.spec.model import Box


def test_keyword_program():
    result = compile_canvas(program(GLOBAL, REGION))
    scene = result.scene
    assert scene.global_description.description == "A cat on a table."
    assert scene.global_description.color == "wheat"
    assert len(scene.regions) == 1
    r = scene.regions[0]
    assert (r.location, r.offset, r.area) == ("in the center", "no offset", "a small square area")
    assert r.distance_to_viewer == 2.0
    assert r.detailed_descriptions == ["A tabby cat."]
    assert result.warnings == []


def test_positional_arguments_follow_the_api_order():
    text = program(
        "canvas.set_global_description('G.', ['d1'], 't', 'red')\n",
        "canvas.add_local_description('on the left', 'no offset', 'a small square area', 3, 'R.', ['x'],"
        " 'tags', 'atm', 'sty', 'q', 'blue')\n",
    )
    scene = compile_canvas(text).scene
    assert scene.global_description.tags == "t"
    r = scene.regions[0]
    assert (r.location, r.distance_to_viewer, r.style, r.color) == ("on the left", 3, "sty", "blue")


def test_quotes_concatenation_comments_trailing_commas_crlf_tabs_unicode():
    text = (
        "# Initialize the canvas\r\n"
        "canvas = Canvas()  # the canvas\r\n"
        "canvas.set_global_description(\r\n"
        "\tdescription=\"Café \" 'au lait '  '''with “quotes”''',\r\n"
        "\tdetailed_descriptions=[\"\"\"Line one\"\"\", 'Zwei — ünïcödé 猫',],\r\n"
        "\ttags='a, b',  # trailing comment\r\n"
        "\tHTML_web_color_name='tan',\r\n"
        ")\r\n"
    )
    scene = compile_canvas(text).scene
    g = scene.global_description
    assert g.description == "Café au lait with “quotes”"
    assert g.detailed_descriptions == ["Line one", "Zwei — ünïcödé 猫"]


def test_markdown_answer_with_prose_around_the_fence():
    text = "Sure! Here is the canvas:\n\n```python\n" + program(GLOBAL, REGION) + "```\n\nEnjoy the image."
    assert len(compile_canvas(text).scene.regions) == 1


def test_tolerated_extras_import_name_bbox_indent_quote_process():
    body = program(
        GLOBAL,
        """canvas.add_local_description(
            name="sun",
            bbox=[70, 0, 20, 20],
            distance_to_viewer=10.0, description='The sun.', detailed_descriptions=[],
            tags='sun', atmosphere='Bright.', style='Flat.', quality_meta='Clean.', HTML_web_color_name='yellow')
        """,
        "canvas_outputs = canvas.process()\n",
        head="from lib_omost.canvas import Canvas\n\ncanvas = Canvas()\n",
    )
    indented = "".join("    " + line + "\n" for line in body.splitlines())
    quoted = "```python\n" + "".join("> " + line + "\n" for line in body.splitlines()) + "> ```\n"
    for text in (body, indented, quoted):
        scene = compile_canvas(text).scene
        r = scene.regions[0]
        assert r.name == "sun" and r.box == Box(70, 0, 20, 20) and r.location is None


def test_commented_out_program_before_the_live_one():
    dead = "".join("# " + line + "\n" for line in program(GLOBAL).splitlines())
    scene = compile_canvas(dead + program(GLOBAL, REGION)).scene
    assert len(scene.regions) == 1


def test_lenient_values_snap_like_omost_and_warn_with_location():
    text = program(GLOBAL, REGION.replace("'in the center'", "'In The Centre'").replace("'orange'", "'Orangee'"))
    result = compile_canvas(text, file="a.md")
    r = result.scene.regions[0]
    assert r.location == "in the center" and r.color == "orange"
    msgs = [(w.line, w.message) for w in result.warnings]
    assert any("location 'In The Centre' -> 'in the center'" in m and line == 9 for line, m in msgs), msgs
    assert any("colour 'Orangee' -> 'orange'" in m for _, m in msgs), msgs
    assert all(w.file == "a.md" and w.col is not None for w in result.warnings)


@pytest.mark.parametrize("value, fragment", [
    ("f'{x}'", "an f-string"),
    ("some_name", "a variable name"),
    ("open('/etc/passwd').read()", "a function call"),
    ("'a' + 'b'", "an arithmetic or concatenation expression"),
    ("[s for s in 'ab']", "expected a string literal, found a list comprehension"),
    ("__import__('os').system('echo hi')", "a function call"),
    ("b'bytes'", "a bytes string"),
    ("None", "found None"),
])
def test_non_literals_are_located_errors(value, fragment):
    text = program(GLOBAL.replace("'A cat on a table.'", value))
    err = one_error(text, file="x.py")
    assert fragment in err.message
    assert (err.file, err.line) == ("x.py", 3)
    assert err.source_line is not None and value.split("(")[0] in err.source_line
    assert err.col == len("    description=") + 1
    formatted = err.format()
    assert "x.py:3:17: error:" in formatted and "^" in formatted


@pytest.mark.parametrize("statement, fragment", [
    ("import os\n", "imports are not allowed"),
    ("from subprocess import run\n", "imports are not allowed"),
    ("os.system('rm -rf /')\n", "calling os.system() is not allowed"),
    ("exec('print(1)')\n", "calling exec() is not allowed"),
    ("def f():\n    pass\n", "a function definition is not allowed"),
    ("x = 1\n", "assignment is not allowed"),
    ("for i in range(3):\n    pass\n", "a for loop is not allowed"),
    ("'a docstring'\n", "an expression statement"),
    ("canvas.clear()\n", "unknown canvas method 'clear'"),
    ("with open('f') as fh:\n    pass\n", "a with statement"),
])
def test_other_statements_are_errors(statement, fragment):
    err = one_error(program(GLOBAL, statement))
    assert fragment in err.message, err.message
    assert err.line == 8


def test_unknown_keyword_suggests_the_right_one():
    err = one_error(program(GLOBAL, REGION.replace("atmosphere=", "atmosphre=")))
    assert "unknown argument 'atmosphre'" in err.message and "did you mean 'atmosphere'" in err.message


def test_missing_required_argument():
    err = one_error(program(GLOBAL, REGION.replace("    style='Photo.',\n", "")))
    assert "missing required argument: style" in err.message
    assert err.line == 8


@pytest.mark.parametrize("depth", ["0", "-1.5", "0.0", "1e999", "-1e999"])
def test_distance_to_viewer_must_be_positive_and_finite(depth):
    err = one_error(program(GLOBAL, REGION.replace("distance_to_viewer=2.0", f"distance_to_viewer={depth}")))
    assert "distance_to_viewer must be a positive finite number" in err.message


def test_unknown_colour_is_an_error():
    err = one_error(program(GLOBAL.replace("'wheat'", "'qqqzzz'")))
    assert "'qqqzzz' is not a valid colour" in err.message


def test_every_error_in_a_program_is_reported():
    text = program(GLOBAL.replace("'wheat'", "'qqqzzz'"), REGION.replace("2.0", "-2"), "import os\n")
    assert len(errors_of(text)) == 3


def test_missing_canvas_or_global():
    messages = [e.message for e in errors_of(GLOBAL)]
    assert "is called before `canvas = Canvas()`" in messages[0] and "no `canvas = Canvas()`" in messages[-1]
    assert "missing `canvas.set_global_description" in one_error(program(REGION)).message
    assert "no Canvas program found" in one_error("Hello, how can I help?").message


def test_global_set_twice_is_an_error_and_region_first_is_a_warning():
    assert "set twice" in one_error(program(GLOBAL, GLOBAL)).message
    result = compile_canvas(program(REGION, GLOBAL))
    assert any("before the global description" in w.message for w in result.warnings)


def test_new_canvas_replaces_the_previous_one_as_in_omost():
    result = compile_canvas(program(GLOBAL, REGION) + program(GLOBAL))
    assert result.scene.regions == []
    assert any("replaces the one created at line 1" in w.message for w in result.warnings)


def test_bbox_validation():
    bad = REGION.replace("location='in the center',\n    offset='no offset',\n    area='a small square area',",
                         "bbox=[10, 10, 0, 5],")
    assert "bbox=[x, y, w, h] needs" in one_error(program(GLOBAL, bad)).message
    both = REGION.replace("location=", "bbox=[1, 2, 3, 4], location=")
    assert "either bbox or location" in one_error(program(GLOBAL, both)).message
    over = REGION.replace("location='in the center',\n    offset='no offset',\n    area='a small square area',",
                          "bbox=[80, 0, 20, 20],")
    result = compile_canvas(program(GLOBAL, over))
    assert any("reaches past" in w.message for w in result.warnings)


# --- truncation and repair ---------------------------------------------------------------------

def test_truncated_program_is_recognised_and_partial_keeps_complete_calls():
    full = program(GLOBAL, REGION, REGION)
    cut = full[: full.rindex("tags='cat'") + 6]
    err = one_error(cut)
    assert "truncated" in err.message and "--partial" in err.message
    result = compile_canvas(cut, partial=True)
    assert result.truncated and len(result.scene.regions) == 1
    assert any("truncated" in w.message for w in result.warnings)


def test_truncated_inside_unclosed_fence():
    text = "```python\n" + program(GLOBAL, REGION)[:-40]
    result = compile_canvas(text, partial=True)
    assert result.truncated and result.scene.regions == []


def test_unescaped_quote_is_repaired_with_a_warning():
    as_lines = GLOBAL.replace("['A cat sits.', 'The room is warm.']", "[\n        'A cat sits.',\n        ITEM,\n    ]")
    text = program(as_lines.replace("ITEM", "'Around the 'O' is a ring.'"))
    result = compile_canvas(text)
    assert result.scene.global_description.detailed_descriptions[1] == "Around the 'O' is a ring."
    assert any("unescaped quote" in w.message and w.line == 6 for w in result.warnings)
    mixed = program(as_lines.replace("ITEM", "'He said \"hi\" to 'O' today.'"))
    assert compile_canvas(mixed).scene.global_description.detailed_descriptions[1] == "He said \"hi\" to 'O' today."


def test_syntax_error_is_located_in_the_original_file():
    text = "Intro line\n\n```python\n" + program(GLOBAL).replace("tags='cat, table',", "tags='cat' 'x' = 3,") + "```\n"
    err = one_error(text, file="answer.md")
    assert err.message.startswith("invalid Python syntax")
    assert err.line == 8 and "tags=" in err.source_line


# --- pathological input ------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "canvas = Canvas()\nx = " + "[" * 5000 + "]" * 5000 + "\n",
    "canvas = Canvas()\nx = " + "(" * 5000 + "\n",
    "canvas = Canvas()\nx = " + "-" * 100_000 + "1\n",
    "canvas = Canvas()\nx = 1" + " + 1" * 100_000 + "\n",
    "canvas = Canvas()\n" + "if x:\n" + "".join(" " * i + "if x:\n" for i in range(1, 120)),
    "canvas = Canvas()\ncanvas.set_global_description(" + "a=" * 3000 + "1)\n",
    "canvas = Canvas()\nx = {" * 300 + "\n",
    "canvas = Canvas()\x00\n",
    "\ufeffcanvas = Canvas()\n" + "\udcff" + "\n",
])
def test_pathological_input_gives_an_error_not_a_crash(text):
    errs = errors_of(text)
    assert errs and all(e.message for e in errs)


def test_multi_megabyte_program_compiles():
    many = "".join(REGION for _ in range(3000))  # about 1.2 MB
    result = compile_canvas(program(GLOBAL, many))
    assert len(result.scene.regions) == 3000


def test_huge_string_value_in_an_enum_field_is_rejected_quickly():
    err = one_error(program(GLOBAL, REGION.replace("'in the center'", "'" + "x" * 2_000_000 + "'")))
    assert "is not a valid location" in err.message and len(err.format()) < 2000


def test_oversized_input_is_refused():
    from omostc.compiler.parse import MAX_SOURCE_CHARS

    err = one_error("#" * (MAX_SOURCE_CHARS + 1))
    assert "limit" in err.message


def test_huge_integer_depth_and_identifier_give_bounded_errors():
    err = one_error(program(GLOBAL, REGION.replace("distance_to_viewer=2.0", "distance_to_viewer=1" + "0" * 400)))
    assert "positive finite number" in err.message and len(err.message) < 1000
    err = one_error(program(GLOBAL, REGION.replace("atmosphere=", "a" * 100_000 + "=")))
    assert "unknown argument" in err.message and len(err.format()) < 2000


def test_prose_is_skipped_only_when_it_does_not_parse():
    assert compile_canvas("Here you go:\n" + program(GLOBAL)).scene.regions == []
    err = one_error("if True:\n    canvas = Canvas()\n")
    assert "an if statement is not allowed" in err.message and err.line == 1
