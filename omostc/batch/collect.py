"""Gathering a batch: every input loaded (a bad one is a failure of its own), its items planned,
output names given out once (``names``), and omostc PNGs turned into exact re-renders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from omostc.backends.base import Noise
from omostc.batch.names import Claims, clash_message, identity, input_name, png_name, safe_name
from omostc.batch.profile import Profile
from omostc.batch.runner import (
    BatchItem,
    ItemResult,
    plan_source,
    profile_identity,
    scene_problems,
    settings_hash,
    spec_hash,
)
from omostc.diagnostics import Diagnostic, OmostcError, SettingsError
from omostc.settings import fields_of
from omostc.spec.render import RenderOptions, check_options

COMMAND_LINE = "command line"


@dataclass
class Batch:
    profile: Profile
    items: list[BatchItem]
    failures: list[ItemResult]  # inputs that did not load
    warnings: list = field(default_factory=list)  # located diagnostics of the inputs that did


def collect_batch(specs: list[str], profile: Profile, overrides: dict | None = None, seeds: list[int] | None = None,
                  images: int | None = None, from_png: Sequence[str] = (),
                  png_options: dict | None = None) -> Batch:
    """Load every input (specs or Canvas code; a bad one becomes a failure, not an exception),
    plan its items, and add exact re-renders of omostc PNGs (their own scene, settings, seed,
    noise, backend and model). Every input's settings are checked here, before any backend is
    made. An input given twice is one; two inputs with one output name: the later one fails."""
    from omostc.api import load_scene
    from omostc.batch.outputs import read_provenance

    items: list[BatchItem] = []
    failures: list[ItemResult] = []
    warnings: list[Diagnostic] = []
    claims = Claims()
    identities: dict[object, str] = {}  # the file an input is -> its first spelling
    seen: set[str] = set()

    def failed(source: str, name: str, exc: OmostcError) -> None:
        warnings.extend(exc.diagnostics)  # printed with their context
        # the report names the file: the first error's own words (and where), not its full rendering
        failures.append(ItemResult(name=name, source=source, seed=None, status="failed", error=exc.summary()))

    def first_time(source: str) -> bool:
        first = identities.setdefault(identity(source), source)
        if source in seen or first != source:
            warnings.append(Diagnostic("warning", f"the same input as {first}, given before: rendered once",
                                       file=source))
            return False
        seen.add(source)
        return True

    base_identity = profile_identity(profile) if specs else ""
    for source in specs:
        if not first_time(source):
            continue
        name = input_name(source)
        other = claims.clash(source, name, whole=True)
        if other is not None:
            failed(source, name, SettingsError([Diagnostic("error", clash_message(name, other), file=source)]))
            continue
        try:
            if _is_png(source):  # not text: say how a rendered picture is re-rendered
                raise OmostcError("this is a PNG, not a spec: give it as --from-png to re-render it", file=source)
            scene, found = load_scene(source)
            warnings.extend(found)
            items += plan_source(source, scene, profile, overrides, seeds, images, identity=base_identity,
                                 warnings=warnings)
        except OmostcError as exc:
            failed(source, name, exc)
    items.sort(key=lambda item: (item.options.width, item.options.height))
    if from_png:
        warnings += _ignored_for_pngs(overrides, seeds, images, png_options)
    identities_of: dict[tuple, str] = {}
    for png in from_png:
        if not first_time(png):
            continue
        name, row_name = png_name(png), safe_name(Path(png).stem)  # a failure's row: the file, not its folder
        try:
            record = read_provenance(png)
            record.options = replace(record.options, **_not_pixels(overrides))  # how much the PNG tells
            check_options(record.options, source=png, where="its omostc.render chunk: ")
            problems = scene_problems(record.scene)
            if problems:
                raise SettingsError([Diagnostic("error", p, file=png) for p in problems])
            png_profile = png_render_profile(record, profile, png_options or {})
        except OmostcError as exc:  # not an omostc PNG: a failure of its own, the rest still render
            failed(png, row_name, _named(exc, png))
            continue
        other = claims.clash(png, name, [record.seed], whole=False)
        if other is not None:
            failed(png, row_name, SettingsError([Diagnostic("error", clash_message(name, other), file=png)]))
            continue
        key = profile_key(png_profile)
        if key not in identities_of:
            identities_of[key] = profile_identity(png_profile)
        noise = record.noise
        items.append(BatchItem(name, png, record.scene, record.seed, record.options, spec_hash(record.scene),
                               settings_hash(record.options, png_profile, identities_of[key]), png_profile,
                               noise if isinstance(noise, Noise) else None))
    return Batch(profile, items, failures, warnings)


def profile_key(profile: Profile) -> tuple:
    """What two profiles must share to render with one loaded backend."""
    import json

    from omostc.settings import to_data

    return profile.backend, profile.model, json.dumps(to_data(profile.options), sort_keys=True, default=str)


def _ignored_for_pngs(overrides: dict | None, seeds: list[int] | None, images: int | None,
                      backend_options: dict | None = None) -> list[Diagnostic]:
    """A warning naming what the command line gives that a re-rendered PNG does not take: its
    seed, image count and every setting or backend option that changes pixels are the PNG's own."""
    from omostc.backends import registry

    names = {f.name for f, _, s in fields_of(RenderOptions) if not s.pixels}
    pixel_options = {f.name for entry in registry.entries().values() for f, _, s in fields_of(entry.options)
                     if s.pixels}
    given = ["--seed"] if seeds else []
    given += ["--images"] if images else []
    for key, value in (overrides or {}).items():
        if key in names or value is None:
            continue
        if isinstance(value, dict):
            given += [f"--{key}-{k}".replace("_", "-") for k, v in value.items() if v is not None]
        else:
            given.append(f"--{key}".replace("_", "-"))
    given += [f"--{k}".replace("_", "-") for k, v in (backend_options or {}).items()
              if k in pixel_options and v is not None]
    if not given:
        return []
    return [Diagnostic("warning", f"{', '.join(given)} do not apply to --from-png images: each is re-rendered "
                       "exactly as it was made (its own seed, settings and model)", file=COMMAND_LINE)]


def _not_pixels(overrides: dict | None) -> dict:
    """The settings given that do not change pictures (``provenance``): they apply to re-rendered
    PNGs too, whose pictures are otherwise made exactly as before."""
    names = {f.name for f, _, s in fields_of(RenderOptions) if not s.pixels}
    return {k: v for k, v in (overrides or {}).items() if k in names and v is not None}


def _named(exc: OmostcError, source: str) -> OmostcError:
    """``exc`` with its diagnostics placed in ``source`` (they named no file)."""
    return OmostcError([replace(d, file=source) if d.file is None else d for d in exc.diagnostics] or
                       [Diagnostic("error", str(exc) or type(exc).__name__, file=source)])


def png_render_profile(record, profile: Profile, given: dict | None = None) -> Profile:
    """The profile that re-renders a PNG exactly: its own backend, model and options, every
    default that depends on the machine resolved as the backend does (``BackendEntry.resolve``);
    only the options that do not change pixels (the device, offloading) come from ``given`` (the
    command line) or from ``profile`` when it has the same backend."""
    from omostc.backends import registry
    from omostc.settings import check, from_data, split_known

    given = given or {}
    entry = registry.get(record.stamp.backend)
    known, _ = split_known(entry.options, record.stamp.backend_options)
    options = from_data(entry.options, known)
    for f, _, s in fields_of(entry.options):
        if s.pixels:
            continue
        if given.get(f.name) is not None:
            setattr(options, f.name, given[f.name])
        elif profile.backend == entry.name:
            setattr(options, f.name, getattr(profile.options, f.name))
    check(options, source="the PNG's settings")
    problems = entry.validate(options)
    if problems:
        raise SettingsError("; ".join(problems))
    model = record.stamp.model if entry.needs_model else None
    return Profile(name=entry.name + (f" {model}" if model else ""), backend=entry.name, model=model,
                   options=entry.resolve(options), origin="a PNG")


def _is_png(source: str) -> bool:
    """A regular file that starts like a PNG (a pipe is never read here: its bytes are the spec's)."""
    if not os.path.isfile(source):
        return False
    try:
        with open(source, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:  # stdin (-), a missing file: load_scene says what is wrong
        return False
