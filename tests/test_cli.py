"""The command line: batches keep going, failures are listed, exits are honest, writes atomic."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner
from helpers import GLOBAL, REGION, program

from omostc.cli import main

GOOD = program(GLOBAL, REGION)
BAD = program(GLOBAL.replace("'wheat'", "f'{x}'"))


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_compile_batch_keeps_going_and_reports_failures_at_the_end(tmp_path):
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text(BAD)
    (tmp_path / "c.py").write_text(GOOD)
    out = tmp_path / "out"
    res = run("compile", "-O", str(out), *(str(tmp_path / n) for n in ("a.md", "b.md", "c.py")))
    assert res.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.yaml", "c.yaml"]
    assert "b.md:6:25: error: expected a string literal, found an f-string" in res.stderr
    assert res.stderr.rstrip().endswith(f"1 of 3 inputs failed:\n  {tmp_path / 'b.md'}")
    assert "Traceback" not in res.output


def test_compile_stdin_to_stdout_and_provenance():
    res = run("compile", "-", "--prompt", "a cat", "--model", "m", input=GOOD)
    assert res.exit_code == 0, res.stderr
    assert "description: A cat on a table." in res.stdout
    assert "  prompt: a cat\n  model: m\n" in res.stdout and "source" not in res.stdout


def test_compile_usage_errors_exit_2(tmp_path):
    assert run("compile", "a", "b").exit_code == 2
    assert run("compile", "a", "b", "-o", "x.yaml").exit_code == 2


def test_compile_missing_file_is_a_clear_error(tmp_path):
    res = run("compile", str(tmp_path / "nope.md"))
    assert res.exit_code == 1 and "nope.md: error: cannot read: No such file or directory" in res.stderr


def test_partial_keeps_complete_calls(tmp_path):
    cut = program(GLOBAL, REGION, REGION)[:-60]
    (tmp_path / "t.md").write_text(cut)
    assert run("compile", str(tmp_path / "t.md")).exit_code == 1
    res = run("compile", "--partial", str(tmp_path / "t.md"))
    assert res.exit_code == 0 and res.stdout.count("distance_to_viewer") == 1
    assert "warning: the program is truncated" in res.stderr


def test_validate_lists_every_failure(tmp_path):
    good = tmp_path / "good.yaml"
    assert run("compile", "-", "-o", str(good), input=GOOD).exit_code == 0
    text = good.read_text()
    (tmp_path / "bad1.yaml").write_text(text.replace("color: wheat", "color: wheet"))
    (tmp_path / "bad2.yaml").write_text(text.replace("version: 1", "version: [1"))
    res = run("validate", str(good), str(tmp_path / "bad1.yaml"), str(tmp_path / "bad2.yaml"))
    assert res.exit_code == 1
    assert "bad1.yaml:9:10: error: global.color: 'wheet' is not an allowed value (did you mean 'wheat'?)" in res.stderr
    assert "bad2.yaml:" in res.stderr and "2 of 3 specs failed" in res.stderr
    assert run("validate", "-q", str(good)).exit_code == 0


def test_decompile_and_lower(tmp_path):
    spec = tmp_path / "s.yaml"
    run("compile", "-", "-o", str(spec), input=GOOD)
    code = run("decompile", str(spec)).stdout
    assert code.startswith("# Initialize the canvas\ncanvas = Canvas()\n")
    fenced = run("decompile", "--fence", str(spec)).stdout
    assert fenced.startswith("```python\n") and fenced.rstrip().endswith("```")
    ir = json.loads(run("lower", str(spec), "--json").stdout)
    assert [l["kind"] for l in ir["layers"]] == ["global", "region"]
    assert ir["layers"][1]["box"] == [20, 70, 20, 70] and ir["layers"][1]["color"] == [255, 165, 0]
    assert ir["layers"][1]["prefixes"] == ["A cat on a table.", "A cat."]
    assert ir["layers"][1]["suffixes"] == ["A tabby cat.", "cat.", "Calm.", "Photo.", "Sharp."]
    (tmp_path / "c.md").write_text(GOOD)
    assert json.loads(run("lower", str(tmp_path / "c.md"), "--json").stdout) == ir


def test_lower_orders_layers_farthest_first_stably():
    text = program(GLOBAL, *(REGION.replace("distance_to_viewer=2.0", f"distance_to_viewer={d}")
                              .replace("'A cat.'", f"'R{i}.'") for i, d in enumerate([1, 5, 5, 3, 5.0])))
    ir = json.loads(run("lower", "-", "--json", input=text).stdout)
    assert [l["prefixes"][1] for l in ir["layers"][1:]] == ["R1.", "R2.", "R4.", "R3.", "R0."]


def test_schema_command(tmp_path):
    res = run("schema")
    assert json.loads(res.stdout)["title"] == "omostc scene spec"


def test_console_script_starts_without_heavy_imports():
    code = ("import sys, omostc.cli, omostc.api; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_unwritable_output_is_reported_not_raised(tmp_path):
    (tmp_path / "a.md").write_text(GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run("compile", str(tmp_path / "a.md"), "-o", str(blocker / "sub" / "a.yaml"))
    assert res.exit_code == 1 and "error:" in res.stderr and "Traceback" not in res.output
    # /proc takes no new files, even from root: the error names the output, not its temporary file
    if os.path.isdir("/proc/self"):
        for args in (("compile", str(tmp_path / "a.md"), "-o", "/proc/a.yaml"), ("schema", "-o", "/proc/s.json")):
            res = run(*args)
            assert res.exit_code == 1 and isinstance(res.exception, SystemExit), args
            assert res.stderr.startswith(f"{args[-1]}: error: "), res.stderr
    long_name = tmp_path / ("n" * 240 + ".yaml")  # valid, though its temporary name would not be
    res = run("compile", str(tmp_path / "a.md"), "-o", str(long_name))
    assert res.exit_code == 0 and long_name.is_file(), res.stderr
