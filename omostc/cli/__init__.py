"""The ``omostc`` command: click commands only, each a thin layer over ``omostc.api``."""

from omostc.cli.commands import main

__all__ = ["main"]
