"""``omostc dev``: the offline test models; each backend adds its own tools from the registry."""

from __future__ import annotations

import click

from omostc.backends.common.logs import quiet_libraries


class DevGroup(click.Group):
    """``omostc dev``, with each backend's developer commands taken from the registry when asked for."""

    def _backend_commands(self) -> dict[str, click.Command]:
        from omostc.backends import registry

        return {c.name: c for entry in registry.entries().values() if entry.dev_commands
                for c in entry.dev_commands() if c.name}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._backend_commands()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, name) or self._backend_commands().get(name)


@click.group(cls=DevGroup)
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
