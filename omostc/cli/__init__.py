"""The ``omostc`` command: click commands only, each argument parsing, one API call, and printing.

Every command takes many files, keeps going past a bad one, lists each failure with its
location, and exits 1 if anything failed. Errors never print a traceback. Each command group's
module is imported only when one of its commands runs (or for ``--help``), so ``omostc compile``
starts without loading the renderer's or the LLM front's code.
"""

from __future__ import annotations

from importlib import import_module

import click

from omostc import __version__

COMMANDS = {  # name -> "module:attribute"
    "compile": "omostc.cli.compile:compile_cmd",
    "validate": "omostc.cli.compile:validate",
    "decompile": "omostc.cli.compile:decompile_cmd",
    "lower": "omostc.cli.compile:lower_cmd",
    "preview": "omostc.cli.compile:preview",
    "schema": "omostc.cli.compile:schema",
    "grammar": "omostc.cli.compile:grammar",
    "render": "omostc.cli.render:render",
    "profiles": "omostc.cli.render:profiles",
    "generate": "omostc.cli.llm:generate",
    "edit": "omostc.cli.llm:edit",
    "chat": "omostc.cli.llm:chat",
    "serve": "omostc.cli.serve:serve",
    "dev": "omostc.cli.dev:dev",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (click's documented lazy-loading pattern)."""

    def __init__(self, *args, lazy: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name].split(":")
            command: click.Command = getattr(import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omostc")
def main() -> None:
    """omostc: compile LLM-written Canvas code into scene specs, and render them."""


__all__ = ["main"]
