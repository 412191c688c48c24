"""The ``omostc`` command: click commands only, each argument parsing, one API call, and printing.

Every command takes many files, keeps going past a bad one, lists each failure with its
location, and exits 1 if anything failed. Errors never print a traceback.
"""

import click

from omostc import __version__
from omostc.cli.compile import compile_cmd, decompile_cmd, grammar, lower_cmd, preview, schema, validate
from omostc.cli.dev import dev
from omostc.cli.llm import chat, edit, generate
from omostc.cli.render import profiles, render


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="omostc")
def main() -> None:
    """omostc: compile LLM-written Canvas code into scene specs, and render them."""


for _command in (compile_cmd, validate, decompile_cmd, lower_cmd, preview, schema, grammar, render, profiles,
                 generate, edit, chat, dev):
    main.add_command(_command)

__all__ = ["main"]
