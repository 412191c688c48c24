"""The SDXL backend's own settings: how the model loads, and how it samples."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from omostc.backends.common.devices import DTYPES
from omostc.settings import setting

SAMPLER_OMOST = "omost"  # Omost's own: DPM++ 2M on Karras sigmas (k-diffusion)
POOLED_MODES = ("omost", "projected")
PROCESSORS = ("fast", "reference")


@dataclass
class SDXLOptions:
    """Options of the sdxl backend (regional attention on SDXL, Omost's method)."""

    dtype: str | None = setting(None, choices=DTYPES, section="load",
                                help="Weights' dtype (default: fp16 on a GPU, fp32 on a CPU).")
    vae_dtype: str | None = setting(
        None, choices=DTYPES, section="load", cli=False,
        help="The VAE's dtype (default: the weights', fp32 for a force_upcast VAE in fp16).")
    vae: str | None = setting(None, min_length=1, section="load",
                              help="Override the VAE (hub id, diffusers folder or single file).")
    model_config: str | None = setting(
        None, min_length=1, section="load",
        help="For a single-file model: a diffusers folder or hub id with its component configurations "
             "(default: SDXL base's, written offline).")
    device: str | None = setting(None, min_length=1, section="load", pixels=False,
                                 help="cuda, cpu or mps (default: the best there is).")
    offload: bool = setting(False, section="load", pixels=False,
                            help="Keep components on the CPU until they run (8 GB cards).")
    processor: str = setting("fast", choices=PROCESSORS, section="load",
                             help="Regional attention: fused, or Omost's literal formula.")
    sampler: str = setting(SAMPLER_OMOST, min_length=1,
                           help="'omost' (Omost's DPM++ 2M Karras, the default) or a diffusers scheduler class name.")
    pooled: str = setting("omost", choices=POOLED_MODES,
                          help="Pooled text embedding: Omost's unprojected pooler output, or diffusers' projected one.")


def problems(options: SDXLOptions) -> list[str]:
    """What is wrong with the options, found before any model loads."""
    if options.sampler == SAMPLER_OMOST:
        return []
    import diffusers

    cls = getattr(diffusers, options.sampler, None)
    if isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin):
        return []
    known = [name for name in dir(diffusers) if name.endswith("Scheduler")]
    close = difflib.get_close_matches(options.sampler, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return [f"unknown sampler {options.sampler!r}{hint}: use 'omost' or a diffusers scheduler class name "
            "(e.g. DPMSolverMultistepScheduler, EulerDiscreteScheduler)"]
