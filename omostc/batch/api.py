"""``render_batch``: what ``omostc render`` does, as one call (the command only parses and prints).

Every setting is checked before any model loads, whichever source it came from: the caller's
settings and backend options, each spec's ``render:`` block, the profile, a PNG's chunk.
Items are grouped by the profile that renders them (a ``--from-png`` image brings its own
backend, model and options), and each group loads its model once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from omostc.backends import registry
from omostc.batch.collect import collect_batch, profile_key
from omostc.batch.manifest import Manifest, Removed, prune_stale
from omostc.batch.profile import Profile, load_profile, with_overrides
from omostc.batch.runner import MANIFEST, BatchItem, ItemResult, run_batch
from omostc.diagnostics import Diagnostic, SettingsError
from omostc.spec.render import MAX_IMAGES, RenderOptions, check_options, resolve_options

STATUSES = ("rendered", "skipped", "failed")
COMMAND_LINE = "command line"  # where settings given to render_batch come from (the CLI's flags)


@dataclass
class BatchReport:
    """What a batch did: one result per item (and per input that did not load)."""

    profile: Profile
    out_dir: Path
    results: list[ItemResult] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)  # located diagnostics of the inputs
    removed: list[Removed] = field(default_factory=list)  # by ``prune`` (with ``dry_run``: would be)
    profiles: list[Profile] = field(default_factory=list)  # those that render its items (a PNG brings its own)

    @property
    def profile_names(self) -> list[str]:
        """The profiles that render the batch's items, by name (a PNG's: its backend and model)."""
        return list(dict.fromkeys(p.name for p in self.profiles)) or [self.profile.name]

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def exit_status(self) -> int:
        return 1 if self.failed else 0

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST


Progress = Callable[[BatchItem, int, int, int, int], None]  # (item, its position, items, step, steps)


def prepare_profile(profile: str | Profile | None = None, *, model: str | None = None, backend: str | None = None,
                    backend_options: dict[str, Any] | None = None, search: Path | None = None) -> Profile:
    """The profile a batch renders with: loaded by name or path, switched to ``backend`` (or, for a
    ``model`` given to a profile that renders without one, to the registry's model backend),
    with ``backend_options`` checked against that backend's options."""
    chosen = profile if isinstance(profile, Profile) else load_profile(profile, search=search)
    target = backend or (registry.MODEL_DEFAULT if model and not registry.get(chosen.backend).needs_model else None)
    if target and target != chosen.backend:
        entry = registry.get(target)
        chosen = Profile(name=chosen.name if profile else "cli", backend=entry.name, render=chosen.render,
                         images=chosen.images, seeds=chosen.seeds, description=chosen.description,
                         origin=chosen.origin)
    chosen = with_overrides(chosen, model=model, options=backend_options)
    entry = registry.get(chosen.backend)
    if entry.needs_model and not chosen.model:
        raise SettingsError(f"the {entry.name!r} backend needs a model: give --model or a profile that names one")
    return replace(chosen, options=entry.resolve(chosen.options))  # what renders, recorded and keyed


def render_batch(specs: Sequence[str | os.PathLike] = (), *, profile: str | Profile | None = None,
                 out_dir: str | os.PathLike = "renders", model: str | None = None, backend: str | None = None,
                 settings: dict[str, Any] | None = None, backend_options: dict[str, Any] | None = None,
                 seeds: Sequence[int] | None = None, images: int | None = None,
                 from_png: Sequence[str | os.PathLike] = (), force: bool = False, executor: str = "local",
                 workers: int | None = None, ray_address: str | None = None, threads: int | None = None,
                 on_result: Callable[[ItemResult], None] | None = None, on_progress: Progress | None = None,
                 on_loaded: Callable[[BatchReport], None] | None = None, prune: bool = False,
                 dry_run: bool = False, on_wait: Callable[[str], None] | None = None) -> BatchReport:
    """Render scene specs (or Canvas code) and omostc PNGs (``from_png``, re-rendered exactly) into
    ``out_dir/<name>/<seed>.png`` with ``out_dir/manifest.jsonl``; incremental, resumable, and one
    failure never stops the rest. ``settings`` are render settings as nested data (``{"steps": 4,
    "highres": {"scale": 1.5}}``) above each spec's own; ``backend_options`` the backend's own
    (``{"dtype": "bf16"}``). Raises SettingsError (nothing rendered) for settings that break their
    rules; an OSError when ``out_dir`` cannot be written. ``on_loaded`` sees the report (its
    warnings) once the inputs are read, before anything renders."""
    if executor not in ("local", "ray"):
        raise SettingsError(f"executor must be 'local' or 'ray', not {executor!r}")
    if dry_run and not prune:
        raise SettingsError([Diagnostic("error", "a dry run only lists what prune would remove", file=COMMAND_LINE)])
    given = {k: v for k, v in (backend_options or {}).items() if v is not None}
    loaded = prepare_profile(profile, model=model, backend=backend) if from_png and not specs else None
    if loaded is not None:  # only PNGs: their own backends take the options; the profile gets those it knows
        mine = {f.name for f in fields(registry.get(loaded.backend).options)}
        chosen = with_overrides(loaded, options={k: v for k, v in given.items() if k in mine})
    else:
        chosen = prepare_profile(profile, model=model, backend=backend, backend_options=given)
    check_profile(chosen)
    check_options(resolve_options(None, settings, base=chosen.render), source=COMMAND_LINE)
    problems = registry.get(chosen.backend).validate(chosen.options)  # the profile's own, before loading
    if problems:
        raise SettingsError([Diagnostic("error", p, file=chosen.origin) for p in problems])
    batch = collect_batch([str(s) for s in specs], chosen, settings, list(seeds) if seeds else None, images,
                          [str(p) for p in from_png], png_options=given)
    if from_png and model:
        batch.warnings.append(Diagnostic("warning", "--model applies to the specs given, not to --from-png images: "
                                         "each re-renders with the model it records", file=COMMAND_LINE))
    groups: dict[tuple, list[BatchItem]] = {}  # by backend, model and options: each loads its model once
    profiles: dict[tuple, Profile] = {}
    for item in batch.items:
        groups.setdefault(profile_key(item.profile), []).append(item)
        profiles.setdefault(profile_key(item.profile), item.profile)
    report = BatchReport(chosen, Path(out_dir), warnings=list(batch.warnings), profiles=list(profiles.values()))
    if on_loaded is not None:
        on_loaded(report)

    def done(result: ItemResult) -> None:
        report.results.append(result)
        if on_result is not None:
            on_result(result)

    failures = list(batch.failures)
    with Manifest(out_dir, wait=on_wait, write=not dry_run) as manifest:  # OUT locked until its rows are written
        for failure in failures if dry_run else []:  # reported, not recorded
            done(failure)
        if not groups and not dry_run:
            run_batch([], _executor(chosen, executor, workers, ray_address, threads, on_progress), out_dir,
                      force=force, failures=failures, on_result=done, manifest=manifest)
        for key, group in ({} if dry_run else groups).items():
            run_batch(group, _executor(profiles[key], executor, workers, ray_address, threads, on_progress), out_dir,
                      force=force, failures=failures, on_result=done, manifest=manifest)
            failures = []
        if prune:
            report.removed = prune_stale(manifest, batch.items, batch.failures, dry_run=dry_run)
    return report


def check_profile(profile: Profile) -> None:
    """The profile's own settings by the rules every source follows (its fields are checked as it
    loads; the rules across them, such as the pixel budget, here), before anything loads."""
    check_options(profile.render, source=profile.origin)
    if profile.seeds is not None and len(profile.seeds) > MAX_IMAGES:
        raise SettingsError([Diagnostic("error", f"seeds: {len(profile.seeds)} seeds; at most {MAX_IMAGES} images "
                                        "per spec are allowed", file=profile.origin)])


def _executor(profile: Profile, kind: str, workers: int | None, address: str | None, threads: int | None,
              progress: Progress | None):
    from omostc.batch.executors import LocalExecutor, RayExecutor, make_backend

    if kind == "ray":
        return RayExecutor(profile, workers=workers, address=address, threads=threads)
    return LocalExecutor(lambda: make_backend(profile, threads), progress, profile=profile)


__all__ = ["BatchReport", "RenderOptions", "prepare_profile", "render_batch"]
