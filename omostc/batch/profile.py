"""Render profiles: which backend and model, on which device, with which default settings.

A profile is a YAML file (``runners/*.yaml``, schema ``schemas/profile.schema.json``) or one of
the built-in names. Settings resolve as: command-line flags > the spec's ``render:`` block >
the profile > Omost's defaults (OMOST.md section 8).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omostc.backends.base import RenderOptions
from omostc.diagnostics import Diagnostic, SpecError
from omostc.files import InputError, read_text
from omostc.spec.model import SPEC_VERSION
from omostc.spec.schema import profile_validator
from omostc.spec.yamlio import load_validated

BUILTIN: dict[str, dict[str, Any]] = {
    "preview": {
        "version": SPEC_VERSION, "backend": "preview",
        "description": "No model: the layout preview (sketch, boxes, labels). Runs anywhere, CI included.",
    },
    "tiny": {
        "version": SPEC_VERSION, "backend": "sdxl", "model": "builtin:tiny-sdxl", "dtype": "fp32", "device": "cpu",
        "description": "The offline random-weight SDXL-shaped model: the whole pipeline on a CPU, in seconds.",
        "render": {"width": 128, "height": 128, "steps": 4},
    },
}
DEFAULT = "preview"


@dataclass
class Profile:
    name: str
    backend: str = "preview"
    model: str | None = None
    model_config: str | None = None
    dtype: str | None = None
    vae_dtype: str | None = None
    vae: str | None = None
    device: str | None = None
    offload: bool = False
    processor: str = "fast"
    images: int = 1
    seeds: list[int] | None = None
    render: RenderOptions = field(default_factory=RenderOptions)

    def digest(self) -> str:
        """What decides the pictures (not where or how fast they are made)."""
        data = {"backend": self.backend, "model": self.model, "vae": self.vae, "dtype": self.dtype,
                "vae_dtype": self.vae_dtype, "processor": self.processor}
        if self.model_config is not None:  # absent from older digests, so their outputs stay current
            data["model_config"] = self.model_config
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def profile_from_dict(name: str, data: dict[str, Any]) -> Profile:
    options = RenderOptions.from_dict({**asdict(RenderOptions()), **data.get("render", {})})
    fields = {k: v for k, v in data.items() if k not in ("version", "description", "render")}
    return Profile(name=name, render=options, **fields)


def load_profile(name_or_path: str | None, *, search: Path | None = None) -> Profile:
    """A profile by path, by name in ``runners/`` (under ``search``, default the current folder),
    or by built-in name."""
    name_or_path = name_or_path or DEFAULT
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        candidate = (search or Path.cwd()) / "runners" / f"{name_or_path}.yaml"
        if candidate.is_file():
            path = candidate
        elif name_or_path in BUILTIN:
            return profile_from_dict(name_or_path, BUILTIN[name_or_path])
        else:
            raise SpecError([Diagnostic("error", f"no profile {name_or_path!r}: not a file, not in runners/, "
                                        f"not built in ({', '.join(BUILTIN)})", file=str(name_or_path))])
    try:
        text = read_text(path)
    except InputError as exc:
        raise SpecError(exc.diagnostics) from None
    data = load_validated(text, file=str(path), validator=profile_validator(),
                          empty="empty file: a profile needs at least 'version' and 'backend'")
    return profile_from_dict(path.stem, data)
