"""Loading FLUX.1 the ways users have it: a hub id, a diffusers folder, or a single-file
transformer checkpoint with the rest of the pipeline from a folder or hub id; in bf16/fp16/fp32,
with the transformer and T5 in NF4 (bitsandbytes) if asked, and model or sequential CPU offload."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omostc.backends.common.devices import check_device, torch_dtype
from omostc.backends.flux.options import DEV_DEFAULT
from omostc.backends.flux.tiny import resolve_model
from omostc.diagnostics import ModelError

SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
QUANTIZED = ("transformer", "text_encoder_2")  # NF4: FLUX's two large components (11.9B and 4.7B parameters)


@dataclass
class FluxModel:
    """The components a render uses, on their devices and dtypes."""

    transformer: Any
    vae: Any
    text_encoder: Any  # CLIP-L: the pooled vector
    text_encoder_2: Any  # T5: the token sequence
    tokenizer: Any
    tokenizer_2: Any
    scheduler_config: dict
    source: str
    execution_device: Any = None  # where the transformer runs (with offload, not where its weights rest)
    offloaded: bool = False

    @property
    def guidance_embeds(self) -> bool:
        """FLUX.1-dev has a guidance embedding; schnell has not."""
        return bool(self.transformer.config.guidance_embeds)

    @property
    def dtype(self):
        return self.transformer.dtype


def _pipeline_class():
    from diffusers import FluxPipeline

    return FluxPipeline


NF4_DEVICE = "quantize: nf4 needs a CUDA GPU (diffusers' bitsandbytes quantizer runs on one only)"


def quantization(quantize: str, dtype, device: str = "cuda"):
    """diffusers' pipeline quantization config for ``quantize`` (None for ``none``)."""
    if quantize == "none":
        return None
    import torch

    if torch.device(device).type != "cuda":
        raise ModelError(f"{NF4_DEVICE}, not {device!r}")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("quantize: nf4 needs bitsandbytes (pip install bitsandbytes)")
    from diffusers.quantizers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        components_to_quantize=list(QUANTIZED))


def load_flux(model: str | os.PathLike, *, dtype: str = "bf16", device: str = "cuda", quantize: str = "none",
              offload: bool = False, sequential_offload: bool = False, base_model: str | None = None,
              local_files_only: bool | None = None) -> FluxModel:
    """Load FLUX.1 from a hub id, a diffusers folder, or a single-file transformer checkpoint
    (``.safetensors``, the original or the diffusers layout) whose text encoders, VAE and
    scheduler come from ``base_model`` (a diffusers folder or hub id, default FLUX.1-dev).

    ``quantize="nf4"`` loads the transformer and T5 in 4-bit NF4 through bitsandbytes;
    ``offload`` keeps each component on the CPU until it runs, ``sequential_offload`` each layer
    (both do nothing on a CPU device, where the weights are in CPU memory already).
    """
    import torch

    dt = torch_dtype(dtype)
    check_device(device)
    model = resolve_model(model)
    path = Path(model)
    single_file = path.is_file()
    quant = quantization(quantize, dt, device)
    try:
        with warnings.catch_warnings():  # diffusers >= 0.42 renames torch_dtype; older ones need it
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            if single_file:
                pipe = _load_single_file(path, dt, quant, base_model, local_files_only)
            else:
                local = path.exists()
                pipe = _pipeline_class().from_pretrained(
                    model, torch_dtype=dt, quantization_config=quant,
                    local_files_only=local if local_files_only is None else local_files_only)
    except ModelError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load FLUX from {model}: {exc}") from None
    if getattr(pipe, "transformer", None) is None or not hasattr(pipe.transformer.config, "num_single_layers"):
        raise ModelError(f"{model} is not a FLUX.1 pipeline (no FLUX transformer in it)")
    if torch.device(device).type == "cpu":  # the weights rest in CPU memory already; accelerate's
        offload = sequential_offload = False  # offload with the CPU as its execution device fails
    if sequential_offload:
        pipe.enable_sequential_cpu_offload(device=device)
    elif offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return FluxModel(transformer=pipe.transformer, vae=pipe.vae, text_encoder=pipe.text_encoder,
                     text_encoder_2=pipe.text_encoder_2, tokenizer=pipe.tokenizer, tokenizer_2=pipe.tokenizer_2,
                     scheduler_config=dict(pipe.scheduler.config), source=str(model),
                     execution_device=torch.device(device), offloaded=offload or sequential_offload)


def _load_single_file(path: Path, dt, quant, base_model: str | None, local_files_only: bool | None):
    from diffusers import FluxTransformer2DModel

    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ModelError(f"{path}: a single-file FLUX transformer must be .safetensors or .sft")
    base = resolve_model(base_model or DEV_DEFAULT)
    local = Path(base).is_dir()
    only_local = local if local_files_only is None else local_files_only
    transformer_quant = None
    if quant is not None:
        from diffusers import BitsAndBytesConfig

        transformer_quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                               bnb_4bit_compute_dtype=dt)
    try:
        transformer = FluxTransformer2DModel.from_single_file(
            str(path), torch_dtype=dt, config=base, subfolder="transformer", local_files_only=only_local,
            quantization_config=transformer_quant)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"cannot load a FLUX transformer from {path}: {exc} (base_model {base} gives its "
                         "configuration: it must be the same FLUX variant, dev or schnell)") from None
    if quant is not None:
        from diffusers.quantizers import PipelineQuantizationConfig

        quant = PipelineQuantizationConfig(quant_backend="bitsandbytes_4bit", quant_kwargs=quant.quant_kwargs,
                                           components_to_quantize=["text_encoder_2"])
    try:
        return _pipeline_class().from_pretrained(base, transformer=transformer, torch_dtype=dt,
                                                 quantization_config=quant, local_files_only=only_local)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the rest of the FLUX pipeline from base_model {base}: {exc}") from None
