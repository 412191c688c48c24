"""The batch runner: many specs x seeds -> ``OUT/<spec>/<seed>.png`` and ``OUT/manifest.jsonl``.

* The backend (and its model) is created once per batch, on first need; text encodings are
  cached across specs by the backend.
* Incremental: every PNG carries the key of what made it (scene, resolved settings, profile,
  seed and batch noise, the model's fingerprint and the render version); an item whose PNG
  already has its key is skipped, so a CI re-run renders only what changed. ``force`` redoes
  everything.
* Outputs stay in OUT: names are made safe and unique (``names``), and a folder that leads
  outside OUT is never written through.
* Safe to kill at any moment: each PNG is replaced atomically, and the manifest's rows go
  through a journal (``omostc.batch.manifest``), so a re-run finishes the batch with no corrupt
  or duplicate outputs or rows.
* One bad spec, or one item failing (a CUDA out-of-memory, say), is recorded and the batch goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from omostc.backends.base import Noise, RenderOptions, Seed, image_seed, resolve_options
from omostc.backends.common.cache import abandoned
from omostc.batch.manifest import MANIFEST as MANIFEST  # re-exported: where OUT's rows are
from omostc.batch.manifest import ItemResult as ItemResult
from omostc.batch.manifest import Manifest
from omostc.batch.names import input_name, resolves_inside
from omostc.batch.outputs import KEY_CHUNK, text_chunks
from omostc.batch.profile import Profile
from omostc.batch.seeds import plan_seeds, starting_seeds
from omostc.diagnostics import Diagnostic, OmostcError, SettingsError
from omostc.files import write_bytes_atomic
from omostc.settings import fields_of
from omostc.spec.model import Scene, scene_to_dict
from omostc.spec.render import DEFAULT_SEED, MAX_REGIONS, check_options

# Part of every key: raised when omostc's pictures change for the same scene, settings, seed and
# model (a fix in lowering, masks or the shared sampler), so re-runs render again exactly then.
# A backend's own changes raise its ``BackendEntry.render_version``.
RENDER_VERSION = 1
__all__ = ["DEFAULT_SEED", "MANIFEST", "RENDER_VERSION", "BatchItem", "ItemResult", "Manifest", "plan_items",
           "plan_source", "rendered_key", "run_batch", "settings_hash", "spec_hash"]


@dataclass
class BatchItem:
    name: str  # output folder (``names.safe_name`` of the spec's file name without its suffix)
    source: str
    scene: Scene
    seed: int  # the image's seed: its file name and the seed it records
    options: RenderOptions
    spec_hash: str
    settings_hash: str
    profile: Profile  # which backend, model and options render it
    noise: Noise | None = None  # Omost's batch noise (``batch_seeds: omost``), else the seed's own

    @property
    def draw(self) -> Seed:
        """What the backend is given to draw the noise from."""
        return self.noise if self.noise is not None else self.seed

    @property
    def key(self) -> str:
        """What made the picture, and how much its PNG tells (a PNG whose provenance changes is
        written again). With ``provenance: none`` it is hashed too: the PNG tells nothing."""
        key = f"{self.spec_hash}-{self.settings_hash}-{self.seed}"
        if self.noise is not None:
            key += f"-batch{self.noise.seed}.{self.noise.index}.{self.noise.batch}"
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


def settings_hash(options: RenderOptions, profile: Profile, identity: str = "") -> str:
    """What in the settings decides the pixels (not how much the PNG tells: ``BatchItem.key``):
    the settings, the profile's backend, model and options, the model's ``identity`` on disk
    (``profile_identity``) and the render version."""
    data = asdict(options)
    for f, _, s in fields_of(RenderOptions):
        if not s.pixels:
            data.pop(f.name)
    return _digest({"options": data, "profile": profile.digest(), "identity": identity, "render": RENDER_VERSION})


def profile_identity(profile: Profile) -> str:
    """The backend's render version and a fingerprint of the model and of every local file an
    option names (a VAE, a config folder): cheap (``fingerprint``), computed once per profile."""
    from omostc.backends import registry
    from omostc.backends.common.fingerprint import model_fingerprint

    entry = registry.get(profile.backend)
    paths = [getattr(profile.options, f.name) for f, _, s in fields_of(type(profile.options)) if s.pixels]
    found = [model_fingerprint(p) for p in [profile.model, *paths] if isinstance(p, str) and p]
    return f"{entry.name}:{entry.render_version}:" + ",".join(found)


def plan_items(sources: list[tuple[str, Scene]], profile: Profile, overrides: dict | None = None,
               seeds: list[int] | None = None, images: int | None = None) -> list[BatchItem]:
    """The batch, one item per spec and seed, grouped by resolution (same-size renders together);
    SettingsError for the first spec whose resolved settings break a rule (``collect_batch``
    makes that spec a failure of its own instead)."""
    identity = profile_identity(profile)
    items = [item for source, scene in sources
             for item in plan_source(source, scene, profile, overrides, seeds, images, identity=identity)]
    return sorted(items, key=_size)


def _size(item: BatchItem) -> tuple[int, int]:
    return item.options.width, item.options.height


def plan_source(source: str, scene: Scene, profile: Profile, overrides: dict | None = None,
                seeds: list[int] | None = None, images: int | None = None, *, identity: str = "",
                warnings: list[Diagnostic] | None = None) -> list[BatchItem]:
    """One spec's items, one per seed (``omostc.batch.seeds``: how seeds, ``--seed`` and
    ``--images`` combine), its settings resolved and checked (SettingsError naming ``source``)
    before anything is allocated; what was asked for twice goes to ``warnings``."""
    options = check_options(resolve_options(scene.render, overrides, base=profile.render), source=source)
    count = int(images or profile.images)
    starts = starting_seeds(seeds, scene.render.seed if scene.render is not None else None, profile.seeds)
    draws, notes, problems = plan_seeds(starts, count, options.batch_seeds, images_given=images is not None)
    problems = scene_problems(scene) + problems
    if problems:
        raise SettingsError([Diagnostic("error", p, file=source) for p in problems])
    if warnings is not None:
        warnings += [Diagnostic("warning", note, file=source) for note in notes]
    settings = settings_hash(options, profile, identity)
    name, scene_hash = input_name(source), spec_hash(scene)
    return [BatchItem(name, source, scene, image_seed(d), options, scene_hash, settings, profile,
                      d if isinstance(d, Noise) else None) for d in draws]


def scene_problems(scene: Scene) -> list[str]:
    """What makes a scene too large to render (compiling and lowering have no such limit)."""
    if len(scene.regions) > MAX_REGIONS:
        return [f"the scene has {len(scene.regions)} regions; at most {MAX_REGIONS} can be rendered "
                "(each adds text tokens that every cross-attention layer attends to at every step)"]
    return []


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
        if not resolves_inside(out_dir, item.name):
            done(ItemResult(status="failed", error=f"{out_dir / item.name} leads outside {out_dir} (a link?): nothing "
                            "is written there", **common(item)))
        elif not force and rendered_key(item.output(out_dir)) == item.key:
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
    """Half-written files of a run that was killed (atomic writes leave ``.NAME.PID.tmp``), in
    OUT and in the folders of this batch that are inside it; only those whose writer is gone
    (``cache.abandoned``), never a running batch's."""
    for folder in [out_dir, *(out_dir / n for n in names if resolves_inside(out_dir, n))]:
        for tmp in folder.glob(".*.tmp") if folder.is_dir() else []:
            match = _TEMPORARY.fullmatch(tmp.name)
            if match and tmp.is_file() and not tmp.is_symlink() and abandoned(tmp, int(match.group(1))):
                tmp.unlink(missing_ok=True)


_TEMPORARY = re.compile(r"\..+\.(\d+)\.tmp")
