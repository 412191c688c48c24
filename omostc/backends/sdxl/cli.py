"""The sdxl backend's developer commands (``omostc dev tiny-sdxl``, ``omostc dev single-file``)."""

from __future__ import annotations

import sys

import click

from omostc.backends.common.devices import DTYPES
from omostc.backends.common.logs import quiet_libraries
from omostc.diagnostics import OmostcError


@click.command("tiny-sdxl")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.Choice(["tiny", "small"]), default="tiny", show_default=True,
              help="tiny: seconds per render on a CPU; small: SDXL's block layout, for benchmarks.")
def tiny_sdxl(folder: str, seed: int, size: str) -> None:
    """Write a random-weight SDXL-shaped model (diffusers layout) for tests and benchmarks."""
    from omostc.backends.sdxl.tiny import build_tiny_sdxl

    quiet_libraries(True)
    click.echo(str(build_tiny_sdxl(folder, seed=seed, size=size)))


@click.command("single-file")
@click.argument("model")
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--dtype", type=click.Choice(list(DTYPES)), default="fp16", show_default=True)
def single_file(model: str, output: str, dtype: str) -> None:
    """Write an SDXL model (hub id, diffusers folder, builtin:tiny-sdxl) as one .safetensors
    checkpoint in the original layout, the one A1111, ComfyUI and from_single_file read."""
    from omostc.backends.sdxl.models import export_single_file

    quiet_libraries(True)
    try:
        click.echo(str(export_single_file(model, output, dtype=dtype)))
    except OmostcError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
