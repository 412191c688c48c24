"""SDXL base's component configurations, written offline: what a single-file checkpoint is
assembled with when no hub can be reached."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omostc.backends.common.cache import built_once

SDXL_UNET: dict[str, Any] = dict(  # stabilityai/stable-diffusion-xl-base-1.0's UNet configuration
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
    cross_attention_dim=2048, use_linear_projection=True, norm_num_groups=32, addition_embed_type="text_time",
    addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
)


SDXL_VAE: dict[str, Any] = dict(  # its VAE: 8x downsampling, fp16 overflows without the fixed VAE, hence force_upcast
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, sample_size=1024,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), scaling_factor=0.13025, force_upcast=True,
)


SDXL_SCHEDULER: dict[str, Any] = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, steps_offset=1,
    timestep_spacing="leading", interpolation_type="linear", prediction_type="epsilon", use_karras_sigmas=False,
)


# CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 text towers; token ids 0/2/1 are the hub configs' own (legacy) values.
SDXL_TEXT: dict[str, Any] = dict(
    vocab_size=49408, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1,
)


SDXL_CLIP_L: dict[str, Any] = dict(
    SDXL_TEXT, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    projection_dim=768, hidden_act="quick_gelu",
)


SDXL_CLIP_G: dict[str, Any] = dict(
    SDXL_TEXT, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    projection_dim=1280, hidden_act="gelu",
)


def write_sdxl_config_folder(folder: str | os.PathLike) -> Path:
    """SDXL base's configurations and tokenizers in the diffusers layout, without weights: what
    ``from_single_file(config=...)`` reads to assemble a pipeline around an original checkpoint."""
    import json

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig

    from omostc.ir.clip.tokenize import write_tokenizer_folder

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
    return built_once("sdxl-base-config", write_sdxl_config_folder)
