"""Regional prompting on FLUX.1 (dev and schnell) through masked joint attention.

``models`` loads FLUX the ways users have it (hub id, diffusers folder, single-file transformer;
bf16/fp16, NF4, offload); ``encode`` turns each layer's prompt into one T5 sequence and the
global layer's into CLIP's pooled vector; ``attention`` is the regional joint-attention
processor; ``flow`` the latent packing and flow-matching schedule; ``render`` samples, decodes
and runs the hi-res pass; ``tiny`` writes the offline random-weight model.
"""

from __future__ import annotations

from typing import Any

from omostc.backends.base import Backend, BackendEntry
from omostc.backends.flux.options import FluxOptions, problems


def resolve(options: FluxOptions) -> FluxOptions:
    """The dtype made explicit: fp32 on a CPU, bf16 on an accelerator."""
    from omostc.backends.common.devices import with_resolved_dtype

    return with_resolved_dtype(options, "bf16")


def create(model: str | None, options: Any, threads: int | None) -> Backend:
    from omostc.backends.common.devices import default_device
    from omostc.backends.flux.models import load_flux
    from omostc.backends.flux.render import FluxRegionalBackend
    from omostc.diagnostics import ModelError

    if model is None:  # needs_model: profiles without one are refused before this
        raise ModelError("the 'flux' backend needs a model")
    o: FluxOptions = options
    device = o.device or default_device()
    dtype = o.dtype or ("fp32" if device == "cpu" else "bf16")
    loaded = load_flux(model, dtype=dtype, device=device, quantize=o.quantize, offload=o.offload,
                       sequential_offload=o.sequential_offload, base_model=o.base_model)
    return FluxRegionalBackend(loaded, o)


def dev_commands() -> list[Any]:
    from omostc.backends.flux.cli import tiny_flux

    return [tiny_flux]


ENTRY = BackendEntry(
    name="flux",
    summary="Regional joint attention on FLUX.1 dev or schnell: hub id, diffusers folder or single-file transformer.",
    options=FluxOptions,
    create=create,
    needs_model=True,
    model_help="FLUX.1 hub id, diffusers folder, single-file transformer (.safetensors, with base_model), "
               "or builtin:tiny-flux.",
    validate=problems,
    dev_commands=dev_commands,
    resolve=resolve,
)
