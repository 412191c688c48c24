"""The flux backend's developer command (``omostc dev tiny-flux``)."""

from __future__ import annotations

import click

from omostc.backends.common.logs import quiet_libraries


@click.command("tiny-flux")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True,
              help="tiny: seconds per render on a CPU; small: FLUX.1's 19 + 38 blocks, narrow, for benchmarks.")
@click.option("--schnell", is_flag=True, help="No guidance embedding, as FLUX.1-schnell (default: as dev).")
def tiny_flux(folder: str, seed: int, size: str, schnell: bool) -> None:
    """Write a random-weight FLUX.1-shaped model (diffusers layout, tokenizers built offline) for
    tests and benchmarks; render it with --model FOLDER --backend flux, or -p tiny-flux."""
    from omostc.backends.flux.tiny import build_tiny_flux

    quiet_libraries(True)
    click.echo(str(build_tiny_flux(folder, seed=seed, size=size, guidance=not schnell)))
