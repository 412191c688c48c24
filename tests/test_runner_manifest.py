"""The batch's bookkeeping (issue 13): JSON logs that are JSON on every line, manifest rows with a
published schema, a manifest whose cost per item is constant and that survives kill -9, a lock
on OUT so two batches never lose each other's rows, and ``--prune``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from conftest import REPO

from omostc.cli import main

SPECS = sorted((REPO / "specs").glob("*.yaml"))
SMALL = ("--width", "64", "--height", "64")
CLI = [sys.executable, "-c", "from omostc.cli import main; main()"]


def render(*args):
    return CliRunner().invoke(main, ["render", *map(str, args)])


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_bytes().decode("utf-8").splitlines()]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def copy_spec(folder: Path, name: str, source: Path = SPECS[0]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    shutil.copy(source, target)
    return target


BAD = "version: 1\nglobal: {description: x}\n"


# --- 1. --log json: every line on stdout is one JSON object ---------------------------------

def test_json_log_puts_one_json_object_on_every_stdout_line_even_for_bad_inputs(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BAD)
    missing = tmp_path / "missing.yaml"
    res = render(SPECS[0], bad, missing, SPECS[1], "-o", tmp_path / "out", "--log", "json", *SMALL)
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines), res.stdout
    events = [json.loads(line) for line in lines]
    diagnostics = [e for e in events if e["event"] == "diagnostic"]
    located = [d for d in diagnostics if d["file"] == str(bad)]
    assert located and located[0]["line"] == 2 and located[0]["column"] and located[0]["severity"] == "error"
    assert "missing required key" in located[0]["message"] and located[0]["excerpt"]
    assert any(d["file"] == str(missing) and "cannot read" in d["message"] for d in diagnostics)
    items = [e for e in events if e["event"] == "item"]
    assert sorted((e["status"], e["seed"]) for e in items) == [("failed", None), ("failed", None),
                                                                ("rendered", 12345), ("rendered", 12345)]
    (summary,) = [e for e in events if e["event"] == "summary"]
    assert (summary["rendered"], summary["skipped"], summary["failed"]) == (2, 0, 2)
    assert "{" not in res.stderr  # nothing of the log is on stderr


def test_json_log_and_manifest_rows_follow_the_published_schemas(tmp_path):
    from omostc.batch.events import log_schema_json, row_schema_json

    row_schema = json.loads((REPO / "schemas" / "manifest-row.schema.json").read_text())
    log_schema = json.loads((REPO / "schemas" / "log-event.schema.json").read_text())
    assert (REPO / "schemas" / "manifest-row.schema.json").read_text() == row_schema_json()  # `make schemas`
    assert (REPO / "schemas" / "log-event.schema.json").read_text() == log_schema_json()
    bad = tmp_path / "broken.yaml"
    bad.write_text(BAD)
    out = tmp_path / "out"
    res = render(SPECS[0], bad, "-o", out, "--log", "json", *SMALL)
    again = render(SPECS[0], "-o", out, "--log", "json", "--prune", *SMALL)
    events = [json.loads(line) for line in (res.stdout + again.stdout).splitlines()]
    assert {e["event"] for e in events} >= {"item", "diagnostic", "summary", "pruned"}
    for event in events:
        jsonschema.validate(event, log_schema)
    for row in rows_of(out):
        jsonschema.validate(row, row_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**rows_of(out)[0], "status": "done"}, row_schema)


def test_json_log_for_an_unusable_profile_is_a_json_diagnostic(tmp_path):
    res = render(SPECS[0], "-o", tmp_path / "out", "--log", "json", "-p", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 1
    (event,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert event["event"] == "diagnostic" and event["severity"] == "error"


# --- 2. constant cost per item, kill -9 safe ------------------------------------------------

def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").is_file(), reason="needs Linux's /proc/self/io")
def test_a_no_op_rerun_writes_a_constant_amount_per_item(tmp_path):
    per_item = []
    for images in (10, 40):
        out = tmp_path / f"out{images}"
        specs = SPECS[:4]
        assert render(*specs, "-o", out, "--images", images, "-q", *SMALL).exit_code == 0
        before = written_bytes()
        res = render(*specs, "-o", out, "--images", images, "-q", *SMALL)
        per_item.append((written_bytes() - before) / (4 * images))
        assert res.exit_code == 0 and f"0 rendered, {4 * images} already rendered" in res.stderr
    small, large = per_item
    assert large < 1.3 * small and large < 4096, per_item  # before: 40x a row per item, growing with N


def test_a_torn_journal_line_is_dropped_and_the_rows_recover(tmp_path):
    from omostc.batch.manifest import JOURNAL

    out = tmp_path / "out"
    assert render(*SPECS[:2], "-o", out, *SMALL).exit_code == 0
    good = rows_of(out)
    row = {**good[0], "seed": 7}
    # a batch killed mid-append: one whole row, then half of one, no newline
    (out / JOURNAL).write_text(json.dumps(row) + "\n" + json.dumps({**row, "seed": 8})[:30])
    res = render(*SPECS[:2], "-o", out, *SMALL)
    assert res.exit_code == 0 and "0 rendered, 2 already rendered" in res.stderr
    rows = rows_of(out)
    assert sorted((r["name"], r["seed"]) for r in rows) == sorted([(r["name"], r["seed"]) for r in good] +
                                                                  [(row["name"], 7)])
    assert not (out / JOURNAL).exists()


def fresh_pngs(out: Path, since: float) -> int:
    return sum(1 for p in out.glob("*/*.png") if p.stat().st_mtime > since)


@pytest.mark.slow
def test_kill_9_during_batches_leaves_a_readable_manifest_and_the_rerun_recovers(tmp_path):
    from omostc.batch.manifest import JOURNAL

    out = tmp_path / "out"
    args = [*CLI, "render", *map(str, SPECS[:4]), "-o", str(out), "--images", "60", "-q", *SMALL]
    left_journal = 0
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.3):
        start = time.time()
        proc = subprocess.Popen([*args, "--force"], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = start + 60
        while time.time() < deadline and fresh_pngs(out, start) < 1 and proc.poll() is None:
            time.sleep(0.005)  # until this run renders: its journal is being appended to
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left_journal += (out / JOURNAL).is_file()
        if (out / "manifest.jsonl").is_file():
            rows_of(out)  # every line whole
    assert left_journal >= 3  # most kills hit a batch mid-way
    final = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    rows = rows_of(out)
    assert len(rows) == 240 and len({(r["name"], r["seed"]) for r in rows}) == 240
    assert not (out / JOURNAL).exists() and not list(out.glob("**/.*.tmp"))


# --- 3. two batches into one OUT -------------------------------------------------------------

@pytest.mark.slow
def test_two_concurrent_batches_into_one_out_keep_every_row(tmp_path):
    out = tmp_path / "out"
    a = [copy_spec(tmp_path / "a", f"a{i}.yaml", SPECS[i % len(SPECS)]) for i in range(4)]
    b = [copy_spec(tmp_path / "b", f"b{i}.yaml", SPECS[i % len(SPECS)]) for i in range(4)]
    procs = [subprocess.Popen([*CLI, "render", *map(str, specs), "-o", str(out), "--images", "50", *SMALL],
                              env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for specs in (a, b)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    rows = rows_of(out)
    assert len(rows) == 400 == len(list(out.glob("*/*.png"))), len(rows)
    assert {r["status"] for r in rows} == {"rendered"}


def test_a_second_batch_waits_for_the_first_and_says_so(tmp_path):
    from omostc.batch.manifest import LOCK

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys\n"
                               f"f = open({str(out / LOCK)!r}, 'a+')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
                               "print('locked', flush=True)\nsys.stdin.readline()\n"],  # held until told
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        batch = subprocess.Popen([*CLI, "render", str(SPECS[0]), "-o", str(out), *SMALL], env=env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert batch.stderr is not None
        first = batch.stderr.readline()  # blocks while the batch waits: it has rendered nothing
        assert "waiting" in first and str(out) in first, first
        assert not (out / "manifest.jsonl").exists() and not list(out.glob("*/*.png"))
    finally:
        holder.stdin.write("go\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    rest = batch.communicate(timeout=60)[1]
    assert batch.returncode == 0 and "1 rendered" in rest, rest
    assert len(rows_of(out)) == 1


# --- 4. rows that no longer belong: fixed specs, --prune -------------------------------------

def test_a_fixed_spec_replaces_its_failure_row(tmp_path):
    spec = tmp_path / "scene.yaml"
    spec.write_text(BAD)
    out = tmp_path / "out"
    assert render(spec, "-o", out, *SMALL).exit_code == 1
    assert [(r["seed"], r["status"]) for r in rows_of(out)] == [(None, "failed")]
    shutil.copy(SPECS[0], spec)
    assert render(spec, "-o", out, *SMALL).exit_code == 0
    assert [(r["name"], r["seed"], r["status"]) for r in rows_of(out)] == [("scene", 12345, "rendered")]


def test_prune_removes_the_rows_and_pngs_of_inputs_no_longer_in_the_batch(tmp_path):
    a, b = copy_spec(tmp_path, "a.yaml", SPECS[0]), copy_spec(tmp_path, "b.yaml", SPECS[1])
    out = tmp_path / "out"
    assert render(a, b, "-o", out, "--images", "3", *SMALL).exit_code == 0
    (out / "b" / "notes.txt").write_text("mine")  # not omostc's: stays
    listed = render(a, "-o", out, "--images", "3", "--prune", "--dry-run", *SMALL)
    assert listed.exit_code == 0, listed.output
    assert listed.stderr.count("would remove") == 3 and str(out / "b" / "12345.png") in listed.stderr
    assert len(rows_of(out)) == 6 and len(list(out.glob("b/*.png"))) == 3  # nothing removed
    res = render(a, "-o", out, "--images", "2", "--prune", *SMALL)
    assert res.exit_code == 0, res.output
    assert res.stderr.count("removed") == 4, res.stderr  # b's 3 and a's third seed
    assert sorted((r["name"], r["seed"]) for r in rows_of(out)) == [("a", 12345), ("a", 12346)]
    assert sorted(p.name for p in out.glob("*/*.png")) == ["12345.png", "12346.png"]
    assert (out / "b" / "notes.txt").read_text() == "mine"
    assert "4 pruned" in res.stderr


def test_prune_keeps_what_it_did_not_make_and_what_is_outside_out(tmp_path):
    a = copy_spec(tmp_path, "a.yaml", SPECS[0])
    out = tmp_path / "out"
    assert render(a, "-o", out, *SMALL).exit_code == 0
    outside = tmp_path / "keep.png"
    shutil.copy(out / "a" / "12345.png", outside)
    plain = out / "c" / "1.png"
    plain.parent.mkdir()
    plain.write_bytes(b"\x89PNG\r\n\x1a\n")  # not one omostc made
    forged = [{**rows_of(out)[0], "name": "x", "seed": 1, "output": str(outside)},
              {**rows_of(out)[0], "name": "c", "seed": 1, "output": str(plain)}]
    with open(out / "manifest.jsonl", "a") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in forged)
    res = render(a, "-o", out, "--prune", *SMALL)
    assert res.exit_code == 0, res.output
    assert outside.is_file() and plain.is_file()
    assert [(r["name"], r["seed"]) for r in rows_of(out)] == [("a", 12345)]


def test_prune_keeps_the_pictures_of_an_input_that_failed_to_load(tmp_path):
    a = copy_spec(tmp_path, "a.yaml", SPECS[0])
    out = tmp_path / "out"
    assert render(a, "-o", out, *SMALL).exit_code == 0
    a.write_text(BAD)  # broken for now: its old picture is not "no longer in the batch"
    res = render(a, "-o", out, "--prune", *SMALL)
    assert res.exit_code == 1 and "removed" not in res.stderr
    assert (out / "a" / "12345.png").is_file()
    assert sorted((r["name"], r["seed"] or 0) for r in rows_of(out)) == [("a", 0), ("a", 12345)]


def test_dry_run_needs_prune(tmp_path):
    res = render(SPECS[0], "-o", tmp_path / "out", "--dry-run")
    assert res.exit_code == 2 and "--prune" in res.stderr


def test_json_log_in_a_real_process_keeps_stdout_for_the_log_alone(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BAD)
    res = subprocess.run([*CLI, "render", str(SPECS[0]), str(bad), "-o", str(tmp_path / "out"), "--log", "json",
                          *SMALL], env=env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert [e["event"] for e in events].count("item") == 2 and events[-1]["event"] == "summary"
    # what else writes to stdout meanwhile (a library's print, a C library, a child process) goes to stderr
    script = ("import os, subprocess, sys\nfrom omostc.cli.render import json_stdout\n"
              "with json_stdout() as emit:\n    print('a print')\n    os.write(1, b'a C write\\n')\n"
              "    subprocess.run([sys.executable, '-c', 'print(\"a child\")'])\n    emit({'event': 'x'})\n"
              "print('after')\n")
    res = subprocess.run([sys.executable, "-c", script], env=env(), capture_output=True, text=True, timeout=60)
    assert res.stdout.splitlines() == ['{"event": "x"}', "after"], res.stdout
    assert all(text in res.stderr for text in ("a print", "a C write", "a child")), res.stderr


def test_a_folder_where_the_manifest_goes_is_an_error_before_anything_renders(tmp_path):
    out = tmp_path / "out"
    (out / "manifest.jsonl").mkdir(parents=True)
    res = render(SPECS[0], "-o", out, *SMALL)
    assert res.exit_code == 1 and "manifest.jsonl is not a file" in res.stderr and "Traceback" not in res.output
    assert not list(out.glob("*/*.png"))
