"""The registry of backends: name -> entry (factory, options dataclass, checks, dev tools).

Adding a backend is one folder under ``backends/`` whose ``__init__`` defines ``ENTRY``, plus one
line in ``_ENTRIES`` below (see ``backends/README.md``). Importing the registry imports no model
library; a backend's heavy modules load when its ``create`` runs.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import import_module

from omostc.backends.base import BackendEntry
from omostc.diagnostics import SettingsError

_ENTRIES = (
    "omostc.backends.preview",
    "omostc.backends.sdxl",
    "omostc.backends.flux",
)
DEFAULT = "preview"


@cache
def entries() -> dict[str, BackendEntry]:
    found: dict[str, BackendEntry] = {}
    for module in _ENTRIES:
        entry: BackendEntry = import_module(module).ENTRY
        found[entry.name] = entry
    return found


def names() -> list[str]:
    return list(entries())


def get(name: str) -> BackendEntry:
    """The entry of a backend, or a SettingsError that suggests the nearest name."""
    found = entries().get(name)
    if found is None:
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SettingsError(f"unknown backend {name!r}{hint}; the backends are {', '.join(names())}")
    return found


def options_classes() -> dict[str, type]:
    return {name: entry.options for name, entry in entries().items()}


def legacy_png_backend(model: str) -> str:
    """The backend of a PNG written by omostc 0.1, which recorded only the model: ``preview`` for
    the preview profile, else SDXL (the only model backend then)."""
    return "preview" if model == "preview" else "sdxl"


MODEL_DEFAULT = "sdxl"  # the backend a bare --model selects when the profile renders without a model
