"""The model-free backend: the layout preview as the picture. It runs anywhere (CI included), so
``omostc render specs/*.yaml`` always works. It is also the worked example in ``backends/README.md``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omostc.backends.base import Backend, BackendEntry


@dataclass
class PreviewOptions:
    """The preview backend has no options of its own."""


def create(model: str | None, options: Any, threads: int | None) -> Backend:
    from omostc.backends.preview.backend import PreviewBackend

    return PreviewBackend()


ENTRY = BackendEntry(
    name="preview",
    summary="No model: the layout picture (colour sketch, boxes, labels). Runs anywhere, CI included.",
    options=PreviewOptions,
    create=create,
    needs_model=False,
)
