"""The FLUX backend's own settings: how FLUX.1 loads (dtype, NF4, offload), how its prompts are
encoded, how it samples, and the regional attention's schedule.

The shared render settings (``RenderOptions``: size, steps, sketch strength, hi-res pass) keep
their meaning; ``cfg`` and ``negative_prompt`` are not used, as FLUX.1 is guidance-distilled
(dev reads ``guidance`` through its guidance embedding; schnell has none).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from omostc.backends.common.devices import DTYPES
from omostc.settings import setting

QUANTIZE = ("none", "nf4")
PROCESSORS = ("fast", "reference")
T5_MAX = 512  # FLUX.1's T5 reads at most 512 tokens (diffusers refuses more)
DEV_DEFAULT = "black-forest-labs/FLUX.1-dev"


@dataclass
class FluxOptions:
    """Options of the flux backend (regional joint attention on FLUX.1)."""

    dtype: str | None = setting(None, choices=DTYPES, section="load",
                                help="Weights' dtype (default: bf16 on a GPU, fp32 on a CPU).")
    quantize: str = setting("none", choices=QUANTIZE, section="load",
                            help="nf4: the transformer and T5 in 4-bit NF4 (bitsandbytes), about a quarter "
                                 "of their bf16 memory (16 GB cards).")
    base_model: str | None = setting(
        None, min_length=1, section="load",
        help=f"For a single-file FLUX transformer: the hub id or diffusers folder with the rest of the "
             f"pipeline (text encoders, VAE, scheduler; default {DEV_DEFAULT}).")
    device: str | None = setting(None, min_length=1, section="load", pixels=False,
                                 help="cuda, cpu or mps (default: the best there is).")
    offload: bool = setting(False, section="load", pixels=False,
                            help="Keep components on the CPU until they run (8 GB cards; FLUX: 24 GB in bf16).")
    sequential_offload: bool = setting(
        False, section="load", pixels=False,
        help="Move weights to the GPU layer by layer as they run: least memory, slowest (not with NF4).")
    processor: str = setting("fast", choices=PROCESSORS, section="load",
                             help="Regional attention: fused, or Omost's literal formula.")
    guidance: float = setting(3.5, minimum=0, maximum=100,
                              help="FLUX.1-dev's distilled guidance scale (its guidance embedding; default 3.5); "
                                   "schnell has no guidance embedding and ignores it.")
    shift: float | None = setting(
        None, exclusive_minimum=0, maximum=100,
        help="A fixed timestep shift s (sigma' = s sigma / (1 + (s - 1) sigma)); default: the model's own "
             "schedule (dev: shifted by the image's token count, as diffusers' FluxPipeline; schnell: none).")
    max_sequence_length: int | None = setting(
        None, minimum=1, maximum=T5_MAX,
        help="T5 tokens a layer's prompt may have (default: 512 for dev, 256 for schnell); longer prompts "
             "are cut, with a warning.")
    pad_to_max: bool = setting(
        False, help="Pad every layer's T5 tokens to max_sequence_length, as the reference implementations "
                    "do (default: each layer keeps its own length, fewer tokens to attend to).")
    # The regional attention's schedule (RegionalAttentionOptions in attention.py: same names and defaults).
    regional_steps: float = setting(10 / 24, minimum=0, maximum=1,
                                    help="Fraction of the denoising steps, from the first, that use the regional "
                                         "mask; then the global prompt alone (default 10/24, the reference's).")
    mask_steps: int | None = setting(None, minimum=0, maximum=1000,
                                     help="A count of regional steps instead of the fraction (the reference's "
                                          "mask_inject_steps).")
    double_interval: int = setting(1, minimum=1, maximum=1000,
                                   help="Mask every k-th double-stream block (1: all).")
    single_interval: int = setting(1, minimum=1, maximum=1000,
                                   help="Mask every k-th single-stream block (1: all).")
    base_ratio: float = setting(0.3, minimum=0, maximum=1,
                                help="Blend of the base pass (global text and image) into image tokens' regional "
                                     "attention output (default 0.3; reference examples: 0.1 to 0.3).")
    area_scaling: bool = setting(False, help="Omost's per-token area scaling of region text scores (off until "
                                             "measured on a real model).")
    area_scale_max: float = setting(4.0, minimum=1, maximum=100, help="The cap of the area scaling factor (default 4).")

def regional_fields() -> list[str]:
    """The names of the regional attention's options (FluxOptions has each but ``reference``,
    which its ``processor`` sets)."""
    from omostc.backends.flux.attention import RegionalAttentionOptions

    return [f.name for f in dataclasses.fields(RegionalAttentionOptions)]


def regional_options(options: FluxOptions) -> Any:
    """The attention's ``RegionalAttentionOptions`` from the backend's options (the fields both
    have; the attention keeps its own defaults for any it has alone)."""
    from omostc.backends.flux.attention import RegionalAttentionOptions

    ours = {f.name for f in dataclasses.fields(FluxOptions)}
    given = {name: getattr(options, name) for name in regional_fields() if name in ours}
    return RegionalAttentionOptions(**given, reference=options.processor == "reference")


def problems(options: FluxOptions) -> list[str]:
    """What is wrong with the options, found before any model loads."""
    out = []
    if options.quantize == "nf4" and options.device is not None and not options.device.startswith("cuda"):
        out.append(f"quantize: nf4 needs a CUDA GPU (diffusers' bitsandbytes quantizer runs on one only), "
                   f"not device {options.device!r}")
    if options.quantize == "nf4" and options.sequential_offload:
        out.append("quantize: nf4 does not go with sequential_offload (bitsandbytes weights cannot be moved "
                   "layer by layer); use offload (model offload) with NF4")
    return out
