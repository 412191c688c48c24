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

from ...diagnostics import OmostcError

DTYPES = ("fp32", "fp16", "bf16")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")


class ModelError(OmostcError):
    pass


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


def torch_dtype(name: str):
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise ModelError(f"dtype must be one of {', '.join(DTYPES)}, not {name!r}")
    return table[name]


def _pipeline_class():
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline


BUILTIN_TINY = "builtin:tiny-sdxl"


def cache_dir() -> Path:
    """$OMOSTC_CACHE, else $XDG_CACHE_HOME/omostc, else ~/.cache/omostc."""
    if os.environ.get("OMOSTC_CACHE"):
        return Path(os.environ["OMOSTC_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "omostc"


def resolve_model(model: str | os.PathLike) -> str:
    """``builtin:tiny-sdxl`` is built once into the cache (atomically); anything else is as given."""
    if str(model) != BUILTIN_TINY:
        return str(model)
    return str(_built_once("tiny-sdxl-seed0", lambda folder: build_tiny_sdxl(folder, seed=0)))


def _built_once(name: str, build) -> Path:
    """``cache_dir()/name``, built by ``build(folder)`` the first time and moved into place whole."""
    target = cache_dir() / name
    if not (target / "model_index.json").is_file():
        import shutil
        import tempfile

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


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
    except (OSError, ValueError, EnvironmentError) as exc:
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


def check_device(device: str) -> None:
    """A device torch can use here, or a ModelError that says why not (before anything loads)."""
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ModelError(f"unknown device {device!r} ({exc}); use cuda, cpu or mps") from None
    if kind == "cuda" and not torch.cuda.is_available():
        why = "no CUDA device is visible" if torch.version.cuda else f"this torch ({torch.__version__}) has no CUDA"
        raise ModelError(f"device {device!r} is not available: {why}; use --device cpu")
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError(f"device {device!r} is not available here; use --device cpu")


def single_file_config(path: Path, config: str | None) -> str | None:
    """Where a single file's component configurations come from: ``config`` when given (a
    ``builtin:`` name is built), else SDXL base's written offline when the checkpoint is SDXL
    base, else None (diffusers infers the type and fetches the configs from the hub)."""
    if config is not None:
        return resolve_model(config)
    if path.suffix.lower() != ".safetensors":
        return None
    from .checkpoint import is_sdxl_base_layout

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


# --- the offline test model ----------------------------------------------------------------

# The middle block takes the last block's transformer depth, as in diffusers (SDXL: 10).
TINY = dict(blocks=(32, 64, 64), layers=1, depth=(1, 1, 1), head_dim=8, te=(32, 64), te_layers=2)
SMALL = dict(blocks=(64, 128, 128), layers=2, depth=(1, 2, 10), head_dim=64, te=(64, 128), te_layers=4)


SDXL_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0's UNet configuration
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048, use_linear_projection=True, norm_num_groups=32, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)


SDXL_VAE = dict(  # its VAE: 8x downsampling, fp16 overflows without the fixed VAE, hence force_upcast
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=1024,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), scaling_factor=0.13025, force_upcast=True,
)
SDXL_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      steps_offset=1, timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon",
                      use_karras_sigmas=False)
# CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 text towers; token ids 0/2/1 are the hub configs' own (legacy) values.
SDXL_TEXT = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1)
SDXL_CLIP_L = dict(SDXL_TEXT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   projection_dim=768, hidden_act="quick_gelu")
SDXL_CLIP_G = dict(SDXL_TEXT, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                   projection_dim=1280, hidden_act="gelu")


def write_sdxl_config_folder(folder: str | os.PathLike) -> Path:
    """SDXL base's configurations and tokenizers in the diffusers layout, without weights: what
    ``from_single_file(config=...)`` reads to assemble a pipeline around an original checkpoint."""
    import json

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig

    from ...tokenize import write_tokenizer_folder

    folder = Path(folder)
    for name, cls, config in (("unet", UNet2DConditionModel, SDXL_UNET), ("vae", AutoencoderKL, SDXL_VAE),
                              ("scheduler", EulerDiscreteScheduler, SDXL_SCHEDULER)):
        (folder / name).mkdir(parents=True, exist_ok=True)  # the JSON diffusers' save_config writes, no model built
        (folder / name / cls.config_name).write_text(json.dumps({"_class_name": cls.__name__, **config}, indent=2),
                                                     encoding="utf-8")
    CLIPTextConfig(**SDXL_CLIP_L, architectures=["CLIPTextModel"]).save_pretrained(folder / "text_encoder")
    CLIPTextConfig(**SDXL_CLIP_G, architectures=["CLIPTextModelWithProjection"]).save_pretrained(
        folder / "text_encoder_2")
    write_tokenizer_folder(folder / "tokenizer")
    write_tokenizer_folder(folder / "tokenizer_2", pad="zero")
    index = {"_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
             "scheduler": ["diffusers", "EulerDiscreteScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return folder


def sdxl_base_config() -> Path:
    """SDXL base's configuration folder, written once into the cache."""
    return _built_once("sdxl-base-config", write_sdxl_config_folder)


def unet_config(size: str) -> dict:
    """UNet2DConditionModel arguments: 'tiny', 'small' (SDXL's layout, narrow) or 'full' (SDXL's)."""
    if size == "full":
        return dict(SDXL_UNET)
    spec = {"tiny": TINY, "small": SMALL}.get(size)
    if spec is None:
        raise ModelError(f"size must be 'tiny', 'small' or 'full', not {size!r}")
    blocks, (te1, te2) = spec["blocks"], spec["te"]
    time_dim = 8 if size == "tiny" else 256
    return dict(
        sample_size=128, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=blocks, layers_per_block=spec["layers"],
        transformer_layers_per_block=spec["depth"], attention_head_dim=tuple(c // spec["head_dim"] for c in blocks),
        cross_attention_dim=te1 + te2, use_linear_projection=True, norm_num_groups=32,
        addition_embed_type="text_time", addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=6 * time_dim + te2,
    )


def build_tiny_sdxl(folder: str | os.PathLike, *, seed: int = 0, size: str = "tiny") -> Path:
    """Write a random-weight SDXL-shaped pipeline in the diffusers layout.

    ``tiny`` runs a whole render on a CPU in seconds; ``small`` has SDXL's real block layout
    (transformer depths 1, 2, 10 and a depth-10 middle, head dim 64: SDXL's 70 cross-attention
    layers) for realistic benchmarks. The VAE downsamples by 8, as SDXL's. Both text encoders
    use CLIP's real vocabulary, so the offline CLIP tokenizer's ids are meaningful to them.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from ...tokenize import write_tokenizer_folder

    spec = {"tiny": TINY, "small": SMALL}.get(size)
    if spec is None:
        raise ModelError(f"size must be 'tiny' or 'small', not {size!r}")
    folder = Path(folder)
    torch.manual_seed(seed)
    te1, te2 = spec["te"]

    def text_config(hidden: int) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=hidden * 2,
                              num_hidden_layers=spec["te_layers"], num_attention_heads=4, max_position_embeddings=77,
                              projection_dim=hidden, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                              hidden_act="quick_gelu")

    text_encoder = CLIPTextModel(text_config(te1))
    text_encoder_2 = CLIPTextModelWithProjection(text_config(te2))
    unet = UNet2DConditionModel(**unet_config(size))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32), scaling_factor=0.13025, sample_size=128,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading")
    write_tokenizer_folder(folder / "tokenizer")
    write_tokenizer_folder(folder / "tokenizer_2", pad="zero")
    pipe = _pipeline_class()(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
