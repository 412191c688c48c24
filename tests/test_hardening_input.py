"""Issue 12, Canvas code and input files: every input gets a clean, located error at bounded cost.

Lone surrogates, huge numbers, oversized and endless inputs, UTF-16 files, terminal escapes and
very long lines, messages in the user's terms; and a fuzz target (hypothesis) for the parser.
"""

from __future__ import annotations

import io
import os
import random
import re
import sys
import time
import unicodedata

import pytest
from click.testing import CliRunner
from conftest import REPO, corpus_files
from helpers import GLOBAL, REGION, errors_of, one_error, program
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omostc import CompileError, compile_canvas
from omostc.cli import main
from omostc.compiler.grammar import sample
from omostc.diagnostics import Diagnostic
from omostc.spec.yamlio import dumps_spec

GOOD = program(GLOBAL, REGION)
MIB = 1024 * 1024


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def width(text: str) -> int:
    """Terminal columns: wide East Asian characters take two, combining and format characters none."""
    return sum(0 if unicodedata.combining(c) or unicodedata.category(c) == "Cf"
               else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def caret_under(formatted: str, text: str) -> bool:
    """Does the caret line of a formatted diagnostic start under ``text`` in its source line?"""
    lines = formatted.split("\n")
    source, carets = lines[1], lines[2]
    return carets.index("^") == width(source[:source.index(text)])


# --- 1. lone surrogates ----------------------------------------------------------------------

def test_a_lone_surrogate_is_a_located_error_and_the_batch_goes_on(tmp_path):
    (tmp_path / "a.py").write_text(GOOD)
    (tmp_path / "sur.py").write_text(program(GLOBAL.replace("'A cat on a table.'", r"'\ud800'"), REGION))
    (tmp_path / "b.py").write_text(GOOD)
    out = tmp_path / "out"
    res = run("compile", "-O", str(out), *(str(tmp_path / n) for n in ("a.py", "sur.py", "b.py")))
    assert res.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.yaml", "b.yaml"]
    assert "sur.py:3:17: error: this string is not valid text: a lone surrogate \\ud800" in res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize("where, old, new", [
    ("a list item", "'A tabby cat.'", r"'a \udfff b'"),
    ("an enum value", "'in the center'", r"'in the \ud800center'"),
    ("a region name", "location=", r"name='\udcff', location="),
    ("a concatenated string", "'A cat.'", r"'A ' '\ud83d' 'cat.'"),
    ("an eight-digit escape", "'Calm.'", r"'\U0000dc80'"),
])
def test_lone_surrogates_anywhere_are_located_errors(where, old, new):
    err = one_error(program(GLOBAL, REGION.replace(old, new)))
    assert "lone surrogate" in err.message and err.line is not None, where
    err.format().encode("utf-8")


def test_an_escaped_surrogate_pair_is_read_as_its_character():
    result = compile_canvas(program(GLOBAL.replace("'A cat on a table.'", r"'A cat \ud83d\ude00.'"), REGION))
    assert result.scene.global_description.description == "A cat \U0001f600."
    assert any("surrogate pair" in w.message for w in result.warnings)


def test_a_raw_lone_surrogate_in_the_text_is_a_located_error():
    # Text handed to the API (a model's answer decoded from JSON) may hold one unescaped.
    err = one_error(program(GLOBAL.replace("A cat on a table.", "A \ud800 cat."), REGION), file="x.md")
    assert (err.file, err.line) == ("x.md", 3) and "lone surrogate \\ud800" in err.message
    err.format().encode("utf-8")


def test_surrogates_in_names_and_options_from_the_command_line(tmp_path):
    name = str(tmp_path / "bad\udcff.py")  # a file name that is not UTF-8, as the shell passes it
    with open(name.encode("utf-8", "surrogateescape"), "w") as fh:
        fh.write(program(GLOBAL.replace("'wheat'", "3")))
    res = run("compile", name)
    assert res.exit_code == 1 and "bad\\udcff.py:6:" in res.stderr
    (tmp_path / "a.py").write_text(GOOD)
    res = run("compile", str(tmp_path / "a.py"), "--prompt", "a \udcff cat")
    assert res.exit_code == 2 and "not valid text" in res.stderr
    assert "Traceback" not in res.output


# --- 2. huge numbers -------------------------------------------------------------------------

def test_a_huge_hex_number_is_shown_by_its_first_digits_and_length(tmp_path):
    (tmp_path / "hex.py").write_text(program(GLOBAL, REGION.replace("2.0", "0x" + "f" * 5000)))
    res = run("compile", str(tmp_path / "hex.py"))
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "hex.py:12:24: error: distance_to_viewer must be a positive finite number, not a 5,000-digit " \
           "number starting 0xffff" in res.stderr
    assert len(res.stderr) < 2000


def test_a_huge_decimal_literal_says_what_the_user_wrote(tmp_path):
    (tmp_path / "dec.py").write_text(program(GLOBAL, REGION.replace("2.0", "1234567" + "0" * 4993)))
    res = run("compile", str(tmp_path / "dec.py"))
    assert res.exit_code == 1
    assert "dec.py:12:24: error: a 5,000-digit number starting 1234567" in res.stderr
    assert "set_int_max_str_digits" not in res.stderr and "sys." not in res.stderr


@pytest.mark.parametrize("old, new", [
    ("distance_to_viewer=2.0,", "distance_to_viewer=2.0, feather=-0x" + "1" * 5000 + ","),
    ("distance_to_viewer=2.0,", "distance_to_viewer=2.0, weight=0b" + "1" * 20000 + ","),
    ("location='in the center',\n    offset='no offset',\n    area='a small square area',",
     "bbox=[0, 0, 0o" + "7" * 5000 + ", 5],"),
    ("distance_to_viewer=2.0,", "distance_to_viewer=" + "9" * 5000 + ".5,"),
])
def test_huge_numbers_anywhere_give_short_errors(old, new):
    err = one_error(program(GLOBAL, REGION.replace(old, new)))
    assert "-digit number starting" in err.message and len(err.format()) < 1000


# --- 3. bounded reading ----------------------------------------------------------------------

class Endless(io.RawIOBase):
    """A stream of spaces that counts what was read from it (64 MiB, so an unbounded read ends)."""

    def __init__(self, size: int = 64 * MIB):
        self.left, self.read_bytes = size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = b" " * n
        self.left -= n
        self.read_bytes += n
        return n


def test_stdin_is_read_only_up_to_the_limit():
    stream = Endless()
    res = run("compile", "-", input=io.BufferedReader(stream))
    assert res.exit_code == 1
    assert "-: error: standard input is larger than 8 MiB" in res.stderr
    assert stream.read_bytes <= 9 * MIB


def test_an_oversized_file_is_refused_at_the_file_without_reading_it_all(tmp_path):
    big = tmp_path / "big.py"
    with open(big, "wb") as fh:
        fh.truncate(8 * MIB + 1)
    res = run("compile", str(big))
    assert res.exit_code == 1
    assert f"{big}: error: the file is larger than 8 MiB" in res.stderr


def test_an_endless_device_is_refused_at_the_limit():
    start = time.perf_counter()
    res = run("compile", "/dev/zero")
    assert "/dev/zero: error: the file is larger than 8 MiB" in res.stderr
    assert time.perf_counter() - start < 60  # a hang guard, not a timing: the bound only catches a stall


# --- 4. bounded cost within the limit --------------------------------------------------------

REGION_ONE_LINE = ("canvas.add_local_description(location='in the center', offset='no offset', "
                   "area='a small square area', distance_to_viewer=2.0, description='x', tags='', "
                   "atmosphere='', style='', quality_meta='', HTML_web_color_name='red', detailed_descriptions=[{}])\n")


def test_a_dense_program_is_refused_before_it_is_parsed():
    from omostc.compiler.bounds import MAX_TOKENS

    text = program(GLOBAL, REGION_ONE_LINE.format("''," * (MAX_TOKENS // 2 + 10)))
    start = time.perf_counter()
    err = one_error(text)
    assert "too many" in err.message and f"{MAX_TOKENS:,}" in err.message
    assert time.perf_counter() - start < 60  # a hang guard, not a timing: the bound only catches a stall


def test_too_many_lines_are_refused_before_they_are_split():
    from omostc.compiler.parse import MAX_LINES

    err = one_error(GOOD + "\n" * MAX_LINES)
    assert f"more than {MAX_LINES:,} lines" in err.message


def test_a_long_string_costs_little_memory_to_count():
    import tracemalloc

    from omostc.compiler.bounds import too_many_tokens

    text = program(GLOBAL.replace("'A cat on a table.'", "'" + "x" * 6_000_000 + "'"))
    tracemalloc.start()
    assert not too_many_tokens(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * MIB


def test_a_huge_unknown_name_costs_little_memory():
    import tracemalloc

    text = program(GLOBAL, REGION.replace("atmosphere=", "a" * 2_000_000 + "="))
    tracemalloc.start()
    err = one_error(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "unknown argument" in err.message and peak < 40 * MIB, peak // MIB


def test_too_many_regions_and_list_items_are_clear_errors():
    from omostc.compiler.calls import MAX_REGIONS
    from omostc.compiler.literals import MAX_LIST_ITEMS

    err = one_error(program(GLOBAL, REGION_ONE_LINE.format("'a'," * (MAX_LIST_ITEMS + 1))))
    assert f"more than {MAX_LIST_ITEMS:,} items" in err.message and err.line == 8
    err = one_error(program(GLOBAL, REGION_ONE_LINE.format("") * (MAX_REGIONS + 1)))
    assert f"more than {MAX_REGIONS:,} regions" in err.message and err.line == MAX_REGIONS + 8


def test_many_unescaped_quotes_are_repaired_with_few_parses(monkeypatch):
    import ast

    from omostc.compiler import parse

    calls = []
    real = ast.parse
    def counting(source, *a, **k):  # the whole program's parses, not ast.literal_eval's
        calls.extend([1] if "Canvas()" in source else [])
        return real(source, *a, **k)

    monkeypatch.setattr(parse.ast, "parse", counting)
    line = "'Around the 'O' is a ring.',"
    text = program(GLOBAL.replace("['A cat sits.', 'The room is warm.']", "[\n" + (line + "\n") * 40 + "]"))
    result = compile_canvas(text)
    assert result.scene.global_description.detailed_descriptions == ["Around the 'O' is a ring."] * 40
    assert sum("unescaped quote" in w.message for w in result.warnings) == 40
    assert len(calls) <= 4, len(calls)


def test_repairs_in_one_pass_keep_their_limits():
    line = "'Around the 'O' is a ring.',"
    inside = GLOBAL.replace("['A cat sits.', 'The room is warm.']",
                            "[\n" + line + "\n'''text\n" + line + "\nmore''',\n'a' 'b',\n]")
    result = compile_canvas(program(inside))  # a line inside a triple-quoted string is text
    assert result.scene.global_description.detailed_descriptions[1:] == ["text\n" + line + "\nmore", "ab"]
    assert [w.line for w in result.warnings] == [5]
    many = GLOBAL.replace("['A cat sits.', 'The room is warm.']", "[\n" + (line + "\n") * 60 + "]")
    with pytest.raises(CompileError) as info:
        compile_canvas(program(many))
    assert len(info.value.warnings) == 50 and info.value.errors[0].line == 4 + 51


# --- 5. messages in the user's terms ---------------------------------------------------------

@pytest.mark.parametrize("value, fragment", [
    ("3", "found a number"),
    ("-3", "found a negative number"),
    ("1.5j", "found an imaginary number"),
    ("None", "found None"),
    ("True", "found True"),
    ("...", "found ..."),
    ("b'x'", "found a bytes string"),
    ("~3", "found an expression"),
    ("not 'x'", "found an expression"),
    ("('a', 'b')", "found a tuple"),
    ("x[1:2]", "found a subscript"),
    ("await x", "found an await expression"),
])
def test_found_values_are_named_in_the_users_terms(value, fragment):
    err = one_error(program(GLOBAL.replace("'A cat on a table.'", value)))
    assert fragment in err.message
    found = re.search(r"found (.*?): Canvas code", err.message)
    assert found and not re.search(r"[A-Z][a-z]+[A-Z]|\bint\b|\bfloat\b|literal|NoneType", found.group(1))


def test_a_string_where_a_number_is_expected():
    err = one_error(program(GLOBAL, REGION.replace("2.0", "-'x'")))
    assert "expected a number, found an expression" in err.message


@pytest.mark.parametrize("statement, fragment", [
    ("match x:\n    case 1:\n        pass\n", "a match statement"),
    ("while x:\n    break\n", "a while loop"),
    ("nonlocal x\n", "a nonlocal statement"),
    ("async def f():\n    pass\n", "a function definition"),
    pytest.param("try:\n    pass\nexcept* E:\n    pass\n", "a try statement",
                 marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="except* is new in 3.11")),
    ("await x\n", "an expression statement (an await expression)"),
    ("x if y else z\n", "an expression statement (a conditional expression)"),
    ("-x\n", "an expression statement (an expression)"),
    ("x[0]\n", "an expression statement (a subscript)"),
])
def test_statements_are_named_in_the_users_terms(statement, fragment):
    err = one_error(program(GLOBAL, statement))
    assert fragment in err.message and not re.search(r"\b[A-Z][a-z]+[A-Z]", err.message)


def test_a_repeated_keyword_says_so(tmp_path):
    (tmp_path / "t.py").write_text(program(GLOBAL.replace("tags='cat, table',", "tags='cat', tags='x',")))
    res = run("compile", str(tmp_path / "t.py"))
    assert "t.py:5:17: error: the keyword 'tags' is given twice" in res.stderr
    assert "position" not in res.stderr
    err = one_error(program(GLOBAL.replace("description='A cat on a table.',", "'A cat.', description='x',")))
    assert "'description' is given twice: as argument 1 and as description=" in err.message


# --- 6. long lines and 8. terminal escapes in diagnostics -------------------------------------

def test_an_error_far_into_a_long_line_shows_a_window_with_the_caret():
    line = ("    tags='" + "x" * 49_980 + "', description=some_name, detailed_descriptions=[], "
            "HTML_web_color_name='red',")
    err = one_error(program("canvas.set_global_description(\n" + line + "\n)\n"))
    assert err.col == line.index("some_name") + 1 > 50_000
    shown = err.format()
    source = shown.split("\n")[1]
    assert len(source) < 200 and "..." in source and "some_name" in source
    assert caret_under(shown, "some_name")


@pytest.mark.parametrize("before", ["", "'\x1b]0;pwned\x07\x1b[2J', ", "'\u200b\x9b\x1b[31m\x08\x7f', ", "'猫猫\t', ",
                                    "'\u202eevil', "])
def test_terminal_escapes_are_shown_escaped_with_the_caret_in_place(tmp_path, before):
    text = program(GLOBAL.replace("tags='cat, table',", f"tags={before}\x1b[2J,"))
    name = tmp_path / "a\x1b[2J.py"
    name.write_text(text)
    res = run("compile", str(name))
    assert res.exit_code == 1
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", res.stderr)
    d = errors_of(text)[0]
    shown = d.format()
    assert "\\x1b[2J" in shown and caret_under(shown, "\\x1b[2J,")


def test_diagnostic_format_escapes_message_source_and_file():
    d = Diagnostic("error", "bad \x1b[2J \ud800", file="f\x1b.py", line=1, col=3, end_col=5,
                   source_line="a\x1b[31mbc")
    shown = d.format()
    shown.encode("utf-8")
    assert "\x1b" not in shown and "\\ud800" in shown and "f\\x1b.py:1:3" in shown
    assert caret_under(shown, "[31m")


# --- 7. UTF-16 and UTF-32 files ---------------------------------------------------------------

@pytest.mark.parametrize("encoding, name", [
    ("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"),
    ("utf-32", "UTF-32"), ("utf-32-be", "UTF-32"),
])
def test_utf16_and_utf32_files_are_named_as_such(tmp_path, encoding, name):
    path = tmp_path / "ps.md"
    path.write_bytes(("Here is the canvas:\n" + GOOD).encode(encoding))
    res = run("compile", str(path))
    assert res.exit_code == 1
    assert f"ps.md: error: this file is {name}" in res.stderr and "save it as UTF-8" in res.stderr
    assert "NUL" not in res.stderr and "not UTF-8 text" not in res.stderr
    res = run("compile", "-", input=("Here:\n" + GOOD).encode(encoding))
    assert f"standard input is {name}" in res.stderr


def test_utf8_with_a_bom_still_compiles(tmp_path):
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode("utf-8"))
    assert run("compile", str(path)).exit_code == 0


# --- 9. fuzzing the Canvas parser (hypothesis) -------------------------------------------------
# `OMOSTC_FUZZ_EXAMPLES=20000 pytest tests/test_hardening_input.py -k fuzz` hunts longer.

FUZZ_EXAMPLES = int(os.environ.get("OMOSTC_FUZZ_EXAMPLES", "700"))  # ~10 s here
FUZZ_SECONDS = 20.0  # per input: a hang guard (inputs take milliseconds), not a timing
REAL = [p.read_text(encoding="utf-8") for p in [*sorted((REPO / "specs" / "src").iterdir()), *corpus_files()]]
PIECES = [
    "'", '"', "'''", '"""', "\\", "\n", "\r", "\r\n", "\t", "\x00", "\x1b[2J", "\x1b]0;t\x07", "\x9b", "\x85",
    "\u2028", "\ufeff", "\u202e", "\u200b", "(", ")", "[", "]", "{", "}", ",", "=", ":", ";", "#", "```",
    "```python\n", "\\ud800", "\\udcff", "\\ud83d\\ude00", "\ud800", "\udcff", "\\U0010ffff", "\\U00110000",
    "\\N{BULLET}", "\\x", "\\u12", "0x" + "f" * 5000, "9" * 5000, "0b" + "1" * 20000, "1e999", "-1e999",
    "1_000", "1j", "-" * 2000 + "1", "[" * 1000 + "]" * 1000, "(" * 300, "not " * 500, ".x" * 2000,
    "1+" * 3000 + "1", "lambda: " * 300, "f'{x}'", "b'x'", "None", "True", "...", "x" * 5000, "猫",
    "canvas.add_local_description(", "canvas.set_global_description(", "canvas = Canvas()\n",
    "bbox=[1, 2, 3, 4], ", "feather=3, ", "weight=2, ", "name='n', ", "distance_to_viewer=", "*a, ", "**k, ",
    "if x:\n", "    ", "import os\n", "from lib_omost.canvas import Canvas\n", "canvas.process()\n",
]
VALUES = [
    r"'\ud800'", r"'a\ud83d\ude00b'", r"'\ud83d'", r"['\udfff']", r"'\x1b[2J'", "'\x1b[2J'", r"'\N{BULLET}'",
    "0x" + "f" * 5000, "-0x" + "f" * 5000, "9" * 5000, "9" * 5000 + ".5", "1e999", "-1e999", "1e-999", "-1", "0",
    "0.0", "1j", "-1j", "True", "None", "...", "1_0", "0b" + "1" * 20000, "[]", "['a', 3]", "[" * 200 + "]" * 200,
    "('a',)", "'x' * 3", "-'x'", "not 'x'", "~1", "'In The Center'", "'on the left'", "'Dark Slate Gray'",
    "'x' 'y'", "'''a\nb'''", "b'x'", "f'x'", "[1, 2, 3, 4]", "[0, 0, 90, 90]", "[80, 80, 20, 20]",
    "[1.5, 0, 1, 1]", "[-1, 0, 1, 1]", "(1, 2, 3, 4)", "[0x" + "f" * 5000 + ", 0, 1, 1]", "[1, 2, 3]",
    "'" + "x" * 3000 + "'", "'" + "in the center" * 100 + "'", "*a", "lambda: 1", "x.y.z", "canvas", "Canvas()",
    "{}", "{'a': 1}", "{1}", "[" + "'a', " * 1100 + "]", "''", "'   '", "1.5", "90", "91", "100", "1e300",
    "'it's'", "'Around the 'O' is'", "\"say \"hi\"\"", r"'a\'b'", "'a\\", "'''open",
]
KEYWORDS = ["name=", "bbox=", "feather=", "weight=", "locaton=", "description=", "tags=", "x" * 3000 + "=",
            "distance_to_viewer=", "HTML_web_color_name=", "area=", "offset=", "location=", "detailed_descriptions="]
_VALUE = re.compile(r"""(\w+=)\s*('[^'\n]*'|"[^"\n]*"|\[[^\]\n]*\]|[^,\n)]*)""")


@st.composite
def mutated_programs(draw) -> str:
    seed_text = draw(st.one_of(
        st.integers(0, 2**32 - 1).map(lambda seed: sample(random.Random(seed))),
        st.sampled_from(REAL),
    ))
    text = seed_text
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["value", "value", "value", "keyword", "piece", "piece", "chars", "delete",
                                     "duplicate", "truncate", "swap"]))
        found = list(_VALUE.finditer(text)) if kind in ("value", "keyword") else []
        if found:
            m = draw(st.sampled_from(found))
            if kind == "value":
                text = text[:m.start(2)] + draw(st.sampled_from(VALUES)) + text[m.end(2):]
            else:
                text = text[:m.start(1)] + draw(st.sampled_from(KEYWORDS)) + text[m.end(1):]
        elif kind in ("piece", "value", "keyword"):
            text = text[:pos] + draw(st.sampled_from(PIECES)) + text[pos:]
        elif kind == "chars":
            chars = st.characters(codec=None, exclude_categories=())  # surrogates and controls included
            text = text[:pos] + draw(st.text(chars, max_size=8)) + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 200)):]
        elif kind == "duplicate":
            end = pos + draw(st.integers(1, 400))
            text = text[:end] + text[pos:end] * draw(st.integers(1, 30)) + text[end:]
        elif kind == "truncate":
            text = text[:pos]
        else:
            other = draw(st.integers(0, len(text)))
            a, b = sorted((pos, other))
            text = text[:a] + text[b:b + 40] + text[a + 40:b] + text[a:a + 40] + text[b + 40:] if b - a > 40 else text
    return text


def check_any_input(text: str, partial: bool) -> None:
    """The property: a result or a CompileError, in time, with diagnostics a terminal can show."""
    start = time.perf_counter()
    try:
        result = compile_canvas(text, file="fuzz.md", partial=partial)
        diagnostics = result.warnings
        dumps_spec(result.scene).encode("utf-8")
    except CompileError as exc:
        diagnostics = exc.diagnostics
        assert exc.errors
    elapsed = time.perf_counter() - start
    assert elapsed < FUZZ_SECONDS, f"{elapsed:.1f} s"
    for d in diagnostics:
        shown = d.format()
        shown.encode("utf-8")
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", shown), shown


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(mutated_programs(), st.booleans())
def test_fuzz_the_parser_with_mutated_programs(text, partial):
    check_any_input(text, partial)


@settings(max_examples=FUZZ_EXAMPLES // 3, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(mutated_programs(), st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32-be", "latin-1", "cp1252"]),
       st.binary(max_size=6), st.integers(0, 10**6))
def test_fuzz_input_files_as_bytes(tmp_path_factory, text, encoding, noise, at):
    """Any bytes in a file: a compiled scene or an error (InputError, CompileError, SpecError)."""
    data = text.encode(encoding, "surrogatepass" if encoding.startswith("utf") else "replace")
    at %= len(data) + 1
    path = tmp_path_factory.mktemp("fuzz") / "in.md"
    path.write_bytes(data[:at] + noise + data[at:])
    res = run("compile", str(path))
    assert res.exit_code in (0, 1), res.output
    assert "Traceback" not in res.output
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", res.stderr)


@pytest.mark.parametrize("text", [
    "canvas = Canvas()\nx = " + "[" * 1000 + "]" * 1000 + "\n",
    "canvas = Canvas()\ncanvas.set_global_description(description=" + "[" * 1000 + "'a'" + "]" * 1000 + ")\n",
    "canvas = Canvas()\nx" + ".x" * 5000 + "()\n",
    "canvas = Canvas()\nx" + ".x" * 900 + "()\n",  # parses, but ast.unparse of it would recurse too deep
    "canvas = Canvas()\nx = " + "-" * 200_000 + "1\n",
    "canvas = Canvas()\nx = 1" + "+1" * 200_000 + "\n",
    "canvas = Canvas()\nx" + "[0]" * 100_000 + "\n",
    "canvas = Canvas()\nx = " + "lambda: " * 50_000 + "1\n",
])
def test_deep_nesting_is_a_located_error(text):
    err = one_error(text, file="deep.py")
    assert err.file == "deep.py" and err.line == 2 and err.col is not None, err.format()
    check_any_input(text, False)


@pytest.mark.parametrize("partial", [False, True])
def test_python_warnings_become_located_diagnostics_and_nothing_else(partial):
    import warnings

    line = "'Around the 'O' is \\m a ring.',"
    text = program(GLOBAL.replace("['A cat sits.', 'The room is warm.']", "[\n" + line + "\n'\\d',\n]"))
    if partial:
        text = program(GLOBAL.replace("'A cat on a table.'", "'\\q'"), REGION)[:-40]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compile_canvas(text, partial=partial)
    assert caught == []
    assert [w.line for w in result.warnings if "invalid escape sequence" in w.message] == [5 if not partial else 3]
