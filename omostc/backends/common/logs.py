"""Keeping the model libraries' loading chatter out of omostc's own output."""

from __future__ import annotations

import importlib


def quiet_libraries(quiet: bool) -> None:
    """transformers' warnings off; with ``quiet``, diffusers' and transformers' progress bars too."""
    for name in ("transformers", "diffusers"):
        try:
            library = importlib.import_module(name)
        except ImportError:  # an install with only one of the extras
            continue
        if name == "transformers":
            library.utils.logging.set_verbosity_error()
        if quiet:
            library.utils.logging.disable_progress_bar()
