"""The offline random-weight SDXL-shaped model, written in the diffusers layout so tests and
benchmarks load it through the same code as a real model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omostc.backends.common.cache import built_once
from omostc.backends.sdxl.configs import SDXL_UNET
from omostc.diagnostics import ModelError

# The middle block takes the last block's transformer depth, as in diffusers (SDXL: 10).
TINY: dict[str, Any] = dict(blocks=(32, 64, 64), layers=1, depth=(1, 1, 1), head_dim=8, te=(32, 64), te_layers=2)


SMALL: dict[str, Any] = dict(blocks=(64, 128, 128), layers=2, depth=(1, 2, 10), head_dim=64, te=(64, 128), te_layers=4)


def unet_config(size: str) -> dict[str, Any]:
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
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from omostc.ir.clip.tokenize import write_tokenizer_folder

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
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(folder / "tokenizer_2"),
        unet=unet, scheduler=scheduler,
    )
    # mypy sees diffusers' top-level StableDiffusionXLPipeline as its dummy placeholder class
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    return folder


BUILTIN_TINY = "builtin:tiny-sdxl"


def resolve_model(model: str | os.PathLike) -> str:
    """``builtin:tiny-sdxl`` is built once into the cache (atomically); anything else is as given."""
    if str(model) != BUILTIN_TINY:
        return str(model)
    return str(built_once("tiny-sdxl-seed0", lambda folder: build_tiny_sdxl(folder, seed=0)))
