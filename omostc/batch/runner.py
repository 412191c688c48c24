"""The batch runner: many specs x seeds -> ``OUT/<spec>/<seed>.png`` and ``OUT/manifest.jsonl``.

* The backend (and its model) is created once per batch, on first need; text encodings are
  cached across specs by the backend.
* Incremental: every PNG carries the key of what made it (scene, resolved settings, profile,
  seed); an item whose PNG already has its key is skipped, so a CI re-run renders only what
  changed. ``force`` redoes everything.
* Safe to kill at any moment: each PNG is replaced atomically, and the manifest's rows go
  through a journal (``omostc.batch.manifest``), so a re-run finishes the batch with no corrupt
  or duplicate outputs or rows.
* One bad spec, or one item failing (a CUDA out-of-memory, say), is recorded and the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from omostc.backends.base import RenderOptions, resolve_options
from omostc.batch.manifest import MANIFEST as MANIFEST  # re-exported: where OUT's rows are
from omostc.batch.manifest import ItemResult as ItemResult
from omostc.batch.manifest import Manifest
from omostc.batch.outputs import KEY_CHUNK, RENDER_KEY, text_chunks
from omostc.batch.profile import Profile
from omostc.diagnostics import Diagnostic, OmostcError, SettingsError
from omostc.files import write_bytes_atomic
from omostc.settings import fields_of
from omostc.spec.model import Scene, scene_to_dict
from omostc.spec.render import MAX_IMAGES, MAX_REGIONS, MAX_SEED, check_options

DEFAULT_SEED = 12345


@dataclass
class BatchItem:
    name: str  # output folder: the spec's file name without its suffix
    source: str
    scene: Scene
    seed: int
    options: RenderOptions
    spec_hash: str
    settings_hash: str
    profile: Profile  # which backend, model and options render it

    @property
    def key(self) -> str:
        """What made the picture, and how much its PNG tells (a PNG whose provenance changes is
        written again). With ``provenance: none`` it is hashed too: the PNG tells nothing."""
        key = f"{self.spec_hash}-{self.settings_hash}-{self.seed}"
        mode = self.options.provenance
        if mode == "none":
            return "none-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        return key if mode == "full" else f"{key}-{mode}"

    def output(self, out_dir: Path) -> Path:
        return out_dir / self.name / f"{self.seed}.png"


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def spec_hash(scene: Scene) -> str:
    """What in a scene decides its pictures (its provenance does not)."""
    data = scene_to_dict(scene)
    data.pop("provenance", None)
    return _digest(data)


def settings_hash(options: RenderOptions, profile: Profile) -> str:
    """What in the settings decides the pixels (not how much the PNG tells: ``BatchItem.key``)."""
    data = asdict(options)
    for f, _, s in fields_of(RenderOptions):
        if not s.pixels:
            data.pop(f.name)
    return _digest({"options": data, "profile": profile.digest()})


def plan_items(sources: list[tuple[str, Scene]], profile: Profile, overrides: dict | None = None,
               seeds: list[int] | None = None, images: int | None = None) -> list[BatchItem]:
    """The batch, one item per spec and seed, grouped by resolution (same-size renders together);
    SettingsError for the first spec whose resolved settings break a rule (``collect_batch``
    makes that spec a failure of its own instead)."""
    items = [item for source, scene in sources for item in plan_source(source, scene, profile, overrides, seeds,
                                                                           images)]
    return sorted(items, key=_size)


def _size(item: BatchItem) -> tuple[int, int]:
    return item.options.width, item.options.height


def plan_source(source: str, scene: Scene, profile: Profile, overrides: dict | None = None,
                seeds: list[int] | None = None, images: int | None = None) -> list[BatchItem]:
    """One spec's items, one per seed, its settings resolved and checked (SettingsError naming
    ``source``) before anything is allocated.

    Seeds: ``seeds`` (command line), else the spec's ``render.seed`` counting up ``images``
    times, else the profile's seeds, else 12345 counting up."""
    options = check_options(resolve_options(scene.render, overrides, base=profile.render), source=source)
    count = int(images or profile.images)
    if seeds:
        item_seeds = list(seeds)
    elif scene.render is not None and scene.render.seed is not None:
        item_seeds = [scene.render.seed + i for i in range(min(count, MAX_IMAGES + 1))]
    elif profile.seeds:
        item_seeds = list(profile.seeds)
    else:
        item_seeds = [DEFAULT_SEED + i for i in range(min(count, MAX_IMAGES + 1))]
    problems = scene_problems(scene)
    if len(item_seeds) > MAX_IMAGES:
        problems.append(f"{len(item_seeds)} images of one spec; at most {MAX_IMAGES} are allowed")
    if item_seeds and item_seeds[-1] > MAX_SEED:
        problems.append(f"seeds counting up from {item_seeds[0]} pass the largest seed ({MAX_SEED})")
    if problems:
        raise SettingsError([Diagnostic("error", p, file=source) for p in problems])
    settings = settings_hash(options, profile)
    name, scene_hash = (Path(source).stem if source != "-" else "stdin"), spec_hash(scene)
    return [BatchItem(name, source, scene, int(seed), options, scene_hash, settings, profile) for seed in item_seeds]


def scene_problems(scene: Scene) -> list[str]:
    """What makes a scene too large to render (compiling and lowering have no such limit)."""
    if len(scene.regions) > MAX_REGIONS:
        return [f"the scene has {len(scene.regions)} regions; at most {MAX_REGIONS} can be rendered "
                "(each adds text tokens that every cross-attention layer attends to at every step)"]
    return []


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
    plan its items, and add exact re-renders of omostc PNGs (their own scene, settings, seed
    and model; the profile switches to that model if it has none). Every input's settings are
    checked here, before any backend is made."""
    from omostc.api import load_scene
    from omostc.batch.outputs import read_provenance

    items: list[BatchItem] = []
    failures, warnings = [], []

    def failed(source: str, exc: OmostcError) -> None:
        warnings.extend(exc.diagnostics)  # printed with their context
        # the report names the file: the first error's own words (and where), not its full rendering
        failures.append(ItemResult(name=Path(source).stem, source=source, seed=None, status="failed",
                                   error=exc.summary()))

    for source in specs:
        try:
            scene, found = load_scene(source)
            warnings.extend(found)
            items += plan_source(source, scene, profile, overrides, seeds, images)
        except OmostcError as exc:
            failed(source, exc)
    items.sort(key=_size)
    for png in from_png:
        try:
            record = read_provenance(png)
            record.options = replace(record.options, **_not_pixels(overrides))  # how much the PNG tells
            check_options(record.options, source=png, where=f"its {RENDER_KEY} chunk: ")
            problems = scene_problems(record.scene)
            if problems:
                raise SettingsError([Diagnostic("error", p, file=png) for p in problems])
            png_profile = png_render_profile(record, profile, png_options or {})
        except OmostcError as exc:  # not an omostc PNG: a failure of its own, the rest still render
            failed(png, _named(exc, png))
            continue
        items.append(BatchItem(Path(png).parent.name or Path(png).stem, png, record.scene, record.seed,
                               record.options, spec_hash(record.scene), settings_hash(record.options, png_profile),
                               png_profile))
    return Batch(profile, items, failures, warnings)


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
    """The profile that re-renders a PNG exactly: its own backend, model and options; only the
    options that do not change pixels (the device, offloading) come from ``given`` (the command
    line) or from ``profile`` when it has the same backend."""
    from omostc.backends import registry
    from omostc.settings import check, fields_of, from_data, split_known

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
    return Profile(name=f"from-png:{entry.name}", backend=entry.name,
                   model=record.stamp.model if entry.needs_model else None, options=options, origin="a PNG")


def rendered_key(path: Path) -> str | None:
    """The key a PNG was rendered with, or None if it is missing or unreadable (then it is
    rendered again and replaced). Its pixels are not decoded."""
    if not path.is_file():
        return None
    try:
        return text_chunks(path).get(KEY_CHUNK)
    except OmostcError:
        return None


def run_batch(items: list[BatchItem], executor, out_dir: str | os.PathLike, *, model_name: str | None = None,
              force: bool = False,
              failures: list[ItemResult] | None = None,
              on_result: Callable[[ItemResult], None] | None = None,
              manifest: Manifest | None = None) -> list[ItemResult]:
    """Render, with ``executor`` (``omostc.batch.executors``), the items not rendered yet; the
    outputs and manifest rows are written here, whichever executor ran the renders. ``model_name``
    overrides the model the PNGs record (default: each item's profile's). ``manifest``: OUT's,
    opened (and locked) by the caller for several groups; by default opened and closed here."""
    out_dir = Path(out_dir)
    if manifest is None:
        with Manifest(out_dir) as own:
            return run_batch(items, executor, out_dir, model_name=model_name, force=force, failures=failures,
                             on_result=on_result, manifest=own)
    results: list[ItemResult] = []

    def done(result: ItemResult) -> None:
        manifest.record(result)
        results.append(result)
        if on_result is not None:
            on_result(result)

    def common(item: BatchItem) -> dict:
        return dict(name=item.name, source=item.source, seed=item.seed, output=str(item.output(out_dir)),
                    spec_hash=item.spec_hash, settings_hash=item.settings_hash)

    for failure in failures or []:
        done(failure)
    _remove_stale_temporaries(out_dir, {item.name for item in items})
    todo = []
    for item in items:
        if not force and rendered_key(item.output(out_dir)) == item.key:
            done(ItemResult(status="skipped", **common(item)))
        else:
            todo.append(item)
    for index, data, seconds, error, warnings in executor.map(todo, model_name):
        item = todo[index]
        if error is None:
            try:
                write_bytes_atomic(item.output(out_dir), data)
            except OSError as exc:
                error = f"cannot write {item.output(out_dir)}: {exc.strerror or exc}"
        done(ItemResult(status="failed" if error else "rendered", seconds=seconds, error=error,
                        warnings=list(warnings), **common(item)))
    return results


def _remove_stale_temporaries(out_dir: Path, names: set[str]) -> None:
    """Half-written files of a run that was killed (atomic writes leave ``.NAME.PID.tmp``)."""
    for folder in [out_dir, *(out_dir / n for n in names)]:
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            tmp.unlink(missing_ok=True)
