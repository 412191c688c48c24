"""Loading SDXL the ways users have it, and building a random-weight SDXL-shaped model offline.

``load_sdxl`` takes a hub id, a local diffusers folder, or a single ``.safetensors``/``.ckpt``
checkpoint; ``build_tiny_sdxl`` writes a small model in the real diffusers layout so tests and
benchmarks load it through the very same code.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omostc.backends.common.devices import check_device, torch_dtype
from omostc.backends.sdxl.checkpoint import write_single_file
from omostc.backends.sdxl.configs import sdxl_base_config
from omostc.backends.sdxl.tiny import resolve_model
from omostc.diagnostics import ModelError

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


@dataclass
class SDXLModel:
    """The components a render uses, on their devices and dtypes."""

    unet: Any
    vae: Any
    text_encoder: Any
    text_encoder_2: Any
    tokenizer: Any
    tokenizer_2: Any
    source: str
    offloaded: bool = False
    scheduler_config: dict | None = None  # the checkpoint's own, for diffusers schedulers by name
    execution_device: Any = None  # where the UNet runs (with offload, not where its weights rest)

    @property
    def device(self):
        return self.unet.device

    @property
    def dtype(self):
        return self.unet.dtype


def _pipeline_class():
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline


def load_sdxl(model: str | os.PathLike, *, dtype: str = "fp16", device: str = "cuda", vae: str | None = None,
              vae_dtype: str | None = None, offload: bool = False, variant: str | None = None,
              local_files_only: bool | None = None, config: str | None = None) -> SDXLModel:
    """Load SDXL from a hub id, a diffusers folder, or a single-file checkpoint.

    ``vae`` overrides the VAE (folder, hub id or single file); it runs in ``vae_dtype``, else in
    ``dtype``, except that an fp16 load keeps a VAE whose config asks for ``force_upcast`` (SDXL's
    own) in fp32, as diffusers' pipelines do; ``offload`` keeps each component
    on the CPU until it runs (for 8 GB cards); ``variant="fp16"`` picks fp16 weight files.
    ``config`` (a diffusers folder or hub id) gives a single file its component configurations;
    without it an SDXL-base checkpoint uses SDXL base's, written offline (no hub access).
    """
    import torch

    cls = _pipeline_class()
    dt = torch_dtype(dtype)
    check_device(device)
    model = resolve_model(model)
    path = Path(model)
    local = path.exists()
    single_file = local and path.is_file()
    if single_file:
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ModelError(f"{path}: a single-file checkpoint must be .safetensors or .ckpt")
        config = single_file_config(path, config)
    try:
        with warnings.catch_warnings():  # diffusers >= 0.42 renames torch_dtype; older ones need it
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            if single_file:
                pipe = _load_single_file(cls, path, dt, config, local_files_only)
            else:
                pipe = cls.from_pretrained(model, torch_dtype=dt, variant=variant,
                                           local_files_only=local if local_files_only is None else local_files_only)
    except ModelError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load SDXL from {model}: {exc}") from None
    if vae is not None:  # a single-file VAE takes its configuration from the model's family
        pipe.vae = load_vae(vae, dtype=vae_dtype or dtype, config=config if single_file else model)
    if vae_dtype is None and dtype == "fp16" and getattr(pipe.vae.config, "force_upcast", False):
        vae_dtype = "fp32"  # SDXL's own VAE overflows in fp16 (black images); it says so with force_upcast
    if vae_dtype is not None:
        pipe.vae.to(dtype=torch_dtype(vae_dtype))
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return SDXLModel(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder,
                     text_encoder_2=pipe.text_encoder_2, tokenizer=pipe.tokenizer, tokenizer_2=pipe.tokenizer_2,
                     source=str(model), offloaded=offload, scheduler_config=dict(pipe.scheduler.config),
                     execution_device=torch.device(device))


def _load_single_file(cls, path: Path, dt, config: str | None, local_files_only: bool | None):
    offline = config is not None and Path(config).is_dir()
    try:
        return cls.from_single_file(str(path), torch_dtype=dt, config=config,
                                    local_files_only=offline if local_files_only is None else local_files_only)
    except (OSError, ValueError) as exc:
        hint = "" if config else (" (not SDXL base's layout: give --model-config, a diffusers folder or hub id "
                                  "with this model's configurations)")
        raise ModelError(f"cannot load SDXL from {path}: {exc}{hint}") from None


def single_file_config(path: Path, config: str | None) -> str | None:
    """Where a single file's component configurations come from: ``config`` when given (a
    ``builtin:`` name is built), else SDXL base's written offline when the checkpoint is SDXL
    base, else None (diffusers infers the type and fetches the configs from the hub)."""
    if config is not None:
        return resolve_model(config)
    if path.suffix.lower() != ".safetensors":
        return None
    from omostc.backends.sdxl.checkpoint import is_sdxl_base_layout

    try:
        sdxl_base = is_sdxl_base_layout(path)
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise ModelError(f"{path}: not a readable .safetensors checkpoint ({exc})") from None
    return str(sdxl_base_config()) if sdxl_base else None


def load_vae(vae: str | os.PathLike, *, dtype: str = "fp16", config: str | None = None):
    """A VAE from a folder, a hub id, or a single original-layout file; ``config`` (a diffusers
    folder or hub id with a ``vae/`` configuration) shapes the single file, else SDXL base's."""
    from diffusers import AutoencoderKL

    path = Path(vae)
    try:
        if path.is_file():
            config = config or str(sdxl_base_config())
            return AutoencoderKL.from_single_file(str(path), torch_dtype=torch_dtype(dtype), config=config,
                                                  subfolder="vae", local_files_only=Path(config).is_dir())
        return AutoencoderKL.from_pretrained(str(vae), torch_dtype=torch_dtype(dtype), local_files_only=path.exists())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a VAE from {vae}: {exc}") from None


def export_single_file(model: str | os.PathLike, out: str | os.PathLike, *, dtype: str = "fp16") -> Path:
    """Load an SDXL model (as ``load_sdxl`` does) and write it as one original-layout file."""
    loaded = load_sdxl(model, dtype=dtype, vae_dtype=dtype, device="cpu")  # converted while loading: one copy
    return write_single_file(loaded.unet, loaded.vae, loaded.text_encoder, loaded.text_encoder_2, out)
