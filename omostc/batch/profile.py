"""Render profiles: which backend and model, with which backend options and default settings.

A profile is a YAML file (schema ``schemas/profile.schema.json``): one of those shipped with
omostc (``omostc/data/profiles``), a project's own in ``runners/NAME.yaml`` (which shadows a
shipped one of the same name), or any file by path. ``omostc profiles`` lists them. Settings
resolve as: command-line flags > the spec's ``render:`` block > the profile > Omost's defaults.

The schema is derived from the backend registry: a backend's options that live at the top level
(``section="load"``: dtype, VAE, ...) or under ``render:`` (its sampler, ...) are allowed for
that backend only.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from omostc.backends import registry
from omostc.diagnostics import Diagnostic, SettingsError, SpecError
from omostc.settings import check, fields_of, from_data, property_schema, schema_of, split_known, to_data
from omostc.spec.model import SPEC_VERSION
from omostc.spec.render import MAX_SEED, RenderOptions
from omostc.spec.yamlio import load_validated, read_yaml_text

DEFAULT = registry.DEFAULT  # the shipped profile named after the default backend
PROFILE_ID = f"urn:omostc:schema:profile:{SPEC_VERSION}"
PROJECT_FOLDER = "runners"
CORE_KEYS = ("version", "description", "backend", "model", "images", "seeds", "render")


@dataclass
class Profile:
    name: str
    backend: str = registry.DEFAULT
    model: str | None = None
    options: Any = None  # the backend's options dataclass (``BackendEntry.options``)
    images: int = 1
    seeds: list[int] | None = None
    render: RenderOptions = field(default_factory=RenderOptions)
    description: str = ""
    origin: str = field(default="built in", compare=False)  # where it was defined

    def __post_init__(self):
        if self.options is None:
            self.options = registry.get(self.backend).options()

    def digest(self) -> str:
        """What decides the pictures (not where or how fast they are made)."""
        data: dict[str, Any] = {"backend": self.backend, "model": _model_identity(self.model)}
        for f, _, s in fields_of(type(self.options)):
            if s.pixels:  # every option that changes pixels, defaults included (a default may change)
                data[f.name] = getattr(self.options, f.name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_identity(model: str | None) -> str | None:
    """A local model by its resolved path, however it was spelled (``M``, ``./M``, ``/abs/M/``);
    a hub id or builtin name as given. (What is in the folder is the key's model fingerprint.)"""
    if not model:
        return model
    path = Path(model).expanduser()
    try:
        return str(path.resolve()) if path.exists() else model
    except (OSError, RuntimeError):  # a link loop, a name too long
        return model


def _sections(options_cls: type) -> tuple[list[str], list[str]]:
    """The names of a backend's options at the top level of a profile, and under ``render:``."""
    load = [f.name for f, _, s in fields_of(options_cls) if s.section == "load"]
    render = [f.name for f, _, s in fields_of(options_cls) if s.section != "load"]
    return load, render


def profile_from_dict(name: str, data: dict[str, Any], origin: str = "built in") -> Profile:
    """A profile from schema-checked data; its settings are checked by the same rules as flags."""
    entry = registry.get(data.get("backend", registry.DEFAULT))
    load, _ = _sections(entry.options)
    render_data, backend_render = split_known(RenderOptions, dict(data.get("render", {})))
    options = from_data(entry.options, {**{k: data[k] for k in load if k in data}, **backend_render})
    render = RenderOptions.from_dict({**to_data(RenderOptions()), **render_data})
    profile = Profile(name=name, backend=entry.name, model=data.get("model"), options=options,
                      images=data.get("images", 1), seeds=data.get("seeds"), render=render,
                      description=data.get("description", ""), origin=origin)
    check(profile.render, source=origin)
    check(profile.options, source=origin)
    return profile


# --- finding profiles -----------------------------------------------------------------------

def shipped_profiles() -> dict[str, Path]:
    folder = resources.files("omostc.data").joinpath("profiles")
    return {Path(p.name).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def project_profiles(search: Path | None = None) -> dict[str, Path]:
    folder = (search or Path.cwd()) / PROJECT_FOLDER
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def available_profiles(search: Path | None = None) -> dict[str, Path]:
    """Every profile by name: the project's ``runners/`` shadows the shipped ones."""
    return {**shipped_profiles(), **project_profiles(search)}


def load_profile(name_or_path: str | None, *, search: Path | None = None) -> Profile:
    """A profile by path, by name in ``runners/`` (under ``search``, default the current folder),
    or by the name of a shipped profile."""
    name_or_path = name_or_path or DEFAULT
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        known = available_profiles(search)
        if name_or_path not in known:
            close = difflib.get_close_matches(name_or_path, list(known), n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError([Diagnostic(
                "error", f"no profile {name_or_path!r}{hint}: not a file, not in {PROJECT_FOLDER}/, not shipped "
                f"({', '.join(known)}; `omostc profiles` lists them)", file=str(name_or_path))])
        path = known[name_or_path]
    text = read_yaml_text(path, "render profile")
    data = load_validated(text, file=str(path), validator=profile_validator(),
                          empty="empty file: a profile needs at least 'version' and 'backend'")
    return profile_from_dict(path.stem, data, origin=_origin(path))


def _origin(path: Path) -> str:
    shipped = resources.files("omostc.data").joinpath("profiles")
    try:
        path.resolve().relative_to(Path(str(shipped)).resolve())
        return "shipped with omostc"
    except ValueError:
        return str(path)


# --- schema ---------------------------------------------------------------------------------

def build_profile_schema() -> dict[str, Any]:
    """Render profiles: which backend and model, its options, and default settings."""
    entries = registry.entries()
    load_props: dict[str, Any] = {}
    render_props: dict[str, Any] = {}
    owners: dict[str, list[str]] = {}
    for entry in entries.values():
        for f, tp, s in fields_of(entry.options):
            target = load_props if s.section == "load" else render_props
            prop = property_schema(tp, s)
            target.setdefault(f.name, {**prop, "description": f"{entry.name}: {s.help}"})
            owners.setdefault(f.name, []).append(entry.name)
    render = schema_of(RenderOptions, description="Render settings of the profile (below a spec's own render: block).")
    render["properties"].update(render_props)
    rules = []
    for entry in entries.values():
        load, backend_render = _sections(entry.options)

        def foreign(key: str, backend: str = entry.name) -> dict[str, Any]:
            others = " and ".join(repr(b) for b in owners[key])
            plural = "s" if len(owners[key]) > 1 else ""
            return {"not": {}, "$comment": f"an option of the {others} backend{plural}, not of {backend!r}"}

        foreign_load = {k: foreign(k) for k in load_props if k not in load}
        foreign_render = {k: foreign(k) for k in render_props if k not in backend_render}
        then: dict[str, Any] = {"properties": {**foreign_load, "render": {"properties": foreign_render}}}
        if entry.needs_model:
            then["required"] = ["model"]
        rules.append({"if": {"properties": {"backend": {"const": entry.name}}, "required": ["backend"]},
                      "then": then})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": PROFILE_ID,
        "title": "omostc render profile",
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "backend"],
        "properties": {
            "version": {"const": SPEC_VERSION},
            "description": {"type": "string"},
            "backend": {"enum": list(entries), "description": "; ".join(f"{e.name}: {e.summary}"
                                                                         for e in entries.values())},
            "model": {"type": "string", "minLength": 1,
                      "description": "; ".join(f"{e.name}: {e.model_help}" for e in entries.values() if e.needs_model)},
            **load_props,
            "images": {"type": "integer", "minimum": 1, "maximum": 1000, "description": "Images per spec."},
            "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
                      "minItems": 1, "description": "Seeds to render each spec with."},
            "render": render,
        },
        "allOf": rules,
    }


@cache
def profile_validator():
    import jsonschema

    cls = jsonschema.Draft202012Validator
    schema = build_profile_schema()
    cls.check_schema(schema)
    return cls(schema)


def profile_schema_json() -> str:
    return json.dumps(build_profile_schema(), indent=2, ensure_ascii=False) + "\n"


def with_overrides(profile: Profile, *, model: str | None = None, options: dict[str, Any] | None = None,
                   source: str = "command line") -> Profile:
    """The profile with a model and backend options from another source (the command line), each
    checked against the backend's options before anything loads."""
    from dataclasses import replace

    entry = registry.get(profile.backend)
    given = {k: v for k, v in (options or {}).items() if v is not None}
    known, foreign = split_known(entry.options, given)
    if foreign:
        raise SettingsError([Diagnostic("error", f"{', '.join('--' + k.replace('_', '-') for k in sorted(foreign))}: "
                                        f"not an option of the {entry.name!r} backend", file=source)])
    merged = from_data(entry.options, {**to_data(profile.options), **known})
    check(merged, source=source)
    problems = entry.validate(from_data(entry.options, known)) if known else []  # of what was given here
    if problems:
        raise SettingsError([Diagnostic("error", problem, file=source) for problem in problems])
    return replace(profile, model=model or profile.model, options=merged)
