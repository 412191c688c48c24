"""Regional prompting on SDXL through attention-score manipulation (Omost's method).

``models`` loads SDXL the ways users have it (hub id, diffusers folder, single file);
``checkpoint`` reads and writes the original single-file layout; ``encode`` turns the IR's
77-token bags into text conditioning; ``attention`` is the regional cross-attention processor;
``render`` denoises and decodes; ``tiny`` writes the offline random-weight model.
"""

from __future__ import annotations

from typing import Any

from omostc.backends.base import Backend, BackendEntry
from omostc.backends.sdxl.options import SDXLOptions, problems


def resolve(options: SDXLOptions) -> SDXLOptions:
    """The dtype made explicit: fp32 on a CPU, fp16 on an accelerator."""
    from omostc.backends.common.devices import with_resolved_dtype

    return with_resolved_dtype(options, "fp16")


def create(model: str | None, options: Any, threads: int | None) -> Backend:
    from omostc.backends.common.devices import default_device
    from omostc.backends.sdxl.models import load_sdxl
    from omostc.backends.sdxl.render import SDXLRegionalBackend
    from omostc.diagnostics import ModelError

    if model is None:  # needs_model: profiles without one are refused before this
        raise ModelError("the 'sdxl' backend needs a model")
    o: SDXLOptions = options
    device = o.device or default_device()
    dtype = o.dtype or ("fp32" if device == "cpu" else "fp16")
    loaded = load_sdxl(model, dtype=dtype, device=device, vae=o.vae, vae_dtype=o.vae_dtype, offload=o.offload,
                       config=o.model_config)
    return SDXLRegionalBackend(loaded, o)


def dev_commands() -> list[Any]:
    from omostc.backends.sdxl.cli import single_file, tiny_sdxl

    return [tiny_sdxl, single_file]


ENTRY = BackendEntry(
    name="sdxl",
    summary="Regional attention on SDXL (Omost's method): hub id, diffusers folder or single file.",
    options=SDXLOptions,
    create=create,
    needs_model=True,
    model_help="Hub id, diffusers folder, single .safetensors file, or builtin:tiny-sdxl.",
    validate=problems,
    dev_commands=dev_commands,
    resolve=resolve,
)
