"""Render jobs: one scene, one seed, through ``render_batch`` (the same output folder, manifest
and PNG provenance as ``omostc render``), in a worker thread, one at a time; each job keeps its
events (progress, done, error) so a page that connects late still sees them all."""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from omostc.batch.api import render_batch
from omostc.batch.manifest import MANIFEST
from omostc.batch.names import input_name
from omostc.batch.outputs import read_provenance
from omostc.diagnostics import OmostcError, ProvenanceError, printable
from omostc.serve.documents import diagnostics_json

KEPT_JOBS = 64  # finished jobs remembered (their events), oldest forgotten first
MAX_WAITING = 8  # render jobs started and not finished; more are refused (429) until one ends


class Busy(Exception):
    """Too many renders are waiting."""


@dataclass
class Job:
    id: str
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    finished: bool = False

    def add(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))
        if event in ("done", "error"):
            self.finished = True


def image_url(relative: str) -> str:
    return "/api/image?path=" + quote(relative)


class Renders:
    """The render jobs of one server (its state, not the module's)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.one_at_a_time = threading.Lock()
        self.guard = threading.Lock()

    def job(self, job_id: str) -> Job | None:
        with self.guard:
            return self.jobs.get(job_id)

    def start(self, spec: Path | None, text: str | None, name: str, profile: str, seed: int | None) -> Job:
        job = Job(secrets.token_hex(8))
        with self.guard:
            if sum(not j.finished for j in self.jobs.values()) >= MAX_WAITING:
                raise Busy(f"{MAX_WAITING} renders are already waiting: try again when one is done")
            self.jobs[job.id] = job
            for old in [k for k, j in self.jobs.items() if j.finished][:max(0, len(self.jobs) - KEPT_JOBS)]:
                del self.jobs[old]
        threading.Thread(target=self._run, args=(job, spec, text, name, profile, seed), daemon=True,
                         name=f"omostc-render-{job.id}").start()
        return job

    def _run(self, job: Job, spec: Path | None, text: str | None, name: str, profile: str, seed: int | None) -> None:
        with self.one_at_a_time:
            try:
                if text is not None:  # unsaved edits: rendered from a copy named as the spec
                    with tempfile.TemporaryDirectory(prefix="omostc-serve-") as folder:
                        copy = Path(folder) / f"{name}.yaml"
                        copy.write_text(text, encoding="utf-8")
                        self._render(job, copy, profile, seed)
                else:
                    assert spec is not None
                    self._render(job, spec, profile, seed)
            except OmostcError as exc:
                job.add("error", {"message": exc.summary(), "diagnostics": diagnostics_json(exc.diagnostics)})
            except OSError as exc:
                job.add("error", {"message": f"cannot write the render: {printable(exc.strerror or str(exc))}",
                                  "diagnostics": []})
            except Exception as exc:  # a backend's own failure: shown on the page, the server goes on
                job.add("error", {"message": printable(f"the render failed: {exc}"), "diagnostics": []})

    def _render(self, job: Job, spec: Path, profile: str, seed: int | None) -> None:
        def progress(item, position, items, step, steps) -> None:
            job.add("progress", {"step": step, "steps": steps})

        report = render_batch([spec], profile=profile, out_dir=self.out_dir, seeds=[seed] if seed is not None else None,
                              images=1, on_progress=progress)
        if not report.results:
            job.add("error", {"message": "nothing was rendered", "diagnostics": diagnostics_json(report.warnings)})
            return
        result = report.results[0]
        if result.status == "failed" or not result.output:
            job.add("error", {"message": printable(result.error or "the render failed"),
                              "diagnostics": diagnostics_json(report.warnings)})
            return
        png = Path(result.output)
        relative = png.resolve().relative_to(self.out_dir.resolve()).as_posix()
        job.add("done", {"image": image_url(relative), "path": relative, "seed": result.seed,
                         "status": result.status, "seconds": result.seconds, "profile": report.profile_names[0],
                         "settings": png_settings(png)})


def png_settings(png: Path) -> dict[str, Any]:
    """The render settings a PNG records (its backend, model and options too), or {}."""
    try:
        record = read_provenance(png)
    except (ProvenanceError, OSError):
        return {}
    return {"backend": record.stamp.backend, "model": record.stamp.model, "seed": record.seed,
            "backend_options": record.stamp.backend_options, **record.options.to_dict()}


def past_renders(out_dir: Path, spec_name: str) -> list[dict[str, Any]]:
    """The manifest's rows for a spec (by its output name), newest first, each with its image's URL."""
    manifest = out_dir / MANIFEST
    try:
        lines = manifest.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    name = input_name(spec_name)
    base = out_dir.resolve()
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or row.get("name") != name:
            continue
        row["image"] = None
        output = row.get("output")
        if isinstance(output, str) and row.get("status") != "failed":
            png = (base / name / Path(output).name).resolve()  # OUT/<name>/<seed>.png, wherever OUT was given from
            if png.is_file() and base in png.parents:
                row["image"] = image_url(png.relative_to(base).as_posix())
        rows.append(row)
    rows.sort(key=lambda r: r.get("finished") or 0, reverse=True)
    return rows
