"""``omostc dev``: the offline test models; each backend adds its own tools from the registry."""

from __future__ import annotations

import click

from omostc.backends import registry
from omostc.backends.common.logs import quiet_libraries


@click.group()
def dev() -> None:
    """Developer tools: offline random-weight models, checkpoint conversion."""


@dev.command("tiny-llama")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
def tiny_llama(folder: str, seed: int) -> None:
    """Write a random-weight 0.1M-parameter Llama with a chat template, for tests of the LLM front."""
    from omostc.dev.tiny_llama import build_tiny_llama

    quiet_libraries(True)
    click.echo(str(build_tiny_llama(folder, seed=seed)))


for _entry in registry.entries().values():
    for _command in (_entry.dev_commands() if _entry.dev_commands else []):
        dev.add_command(_command)
