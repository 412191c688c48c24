"""SDXL in one file: the original (Stability "sgm") key layout that A1111, ComfyUI and
``from_single_file`` read, written from diffusers components.

The renames are small pure functions, one per component, each the inverse of the conversion
diffusers applies when it loads such a file; the tests check that inverse by loading the written
file back through ``from_single_file`` and comparing every tensor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omostc.diagnostics import ModelError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

# The key diffusers looks for to call a checkpoint SDXL base (the OpenCLIP tower's 10th block).
SDXL_BASE_KEY = OPEN_CLIP_PREFIX + "transformer.resblocks.9.mlp.c_proj.bias"

_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def _resnet_tail(tail: str) -> str:
    head, _, rest = tail.partition(".")
    return f"{_UNET_RESNET.get(head, head)}.{rest}"


def unet_key(key: str, layers_per_block: int, up_blocks_with_attention: set[int]) -> str:
    """One diffusers UNet key in the original layout (input/middle/output blocks)."""
    step = layers_per_block + 1
    module, _, param = key.rpartition(".")
    if module in _UNET_TOP:
        return f"{_UNET_TOP[module]}.{param}"
    m = re.fullmatch(r"(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?(resnets|attentions|downsamplers|upsamplers)"
                     r"\.(\d+)\.(.+)", key)
    if m is None:
        raise ModelError(f"no original-layout name for UNet key {key!r} (not an SDXL UNet?)")
    group, block, kind, index, tail = m.group(1), int(m.group(2) or 0), m.group(3), int(m.group(4)), m.group(5)
    if group == "mid_block":
        return f"middle_block.{2 * index}.{_resnet_tail(tail)}" if kind == "resnets" else f"middle_block.1.{tail}"
    if group == "down_blocks":
        if kind == "downsamplers":  # ".conv.weight" -> ".op.weight"
            return f"input_blocks.{step * (block + 1)}.0.op.{tail.removeprefix('conv.')}"
        slot = step * block + index + 1
        return f"input_blocks.{slot}.0.{_resnet_tail(tail)}" if kind == "resnets" else f"input_blocks.{slot}.1.{tail}"
    if kind == "upsamplers":
        position = 2 if block in up_blocks_with_attention else 1
        return f"output_blocks.{step * block + layers_per_block}.{position}.{tail}"
    slot = step * block + index
    return f"output_blocks.{slot}.0.{_resnet_tail(tail)}" if kind == "resnets" else f"output_blocks.{slot}.1.{tail}"


def unet_state_dict(state: dict[str, Any], layers_per_block: int) -> dict[str, Any]:
    with_attention = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    return {UNET_PREFIX + unet_key(k, layers_per_block, with_attention): v for k, v in state.items()}


_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_key(key: str, num_blocks: int) -> str:
    """One diffusers AutoencoderKL key in the original layout."""
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    m = re.fullmatch(r"(encoder|decoder)\.(down_blocks|up_blocks)\.(\d+)\."
                     r"(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.+)", key)
    if m:
        side, group, block, part, resnet, tail = m.groups()
        block = int(block) if group == "down_blocks" else num_blocks - 1 - int(block)
        level = "down" if group == "down_blocks" else "up"
        where = f"block.{resnet}" if resnet is not None else ("downsample" if level == "down" else "upsample")
        return f"{side}.{level}.{block}.{where}.{tail}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.(resnets\.(\d+)|attentions\.0)\.(.+)", key)
    if m:
        side, part, resnet, tail = m.groups()
        if resnet is not None:
            return f"{side}.mid.block_{int(resnet) + 1}.{tail}"
        module, _, param = tail.rpartition(".")
        return f"{side}.mid.attn_1.{_VAE_ATTENTION[module]}.{param}"
    return key


def vae_state_dict(state: dict[str, Any], num_blocks: int, prefix: str = VAE_PREFIX) -> dict[str, Any]:
    """AutoencoderKL in the original layout: inside a whole checkpoint (``first_stage_model.``),
    or with ``prefix=""`` as a VAE file of its own (as Stability's ``sdxl_vae.safetensors``)."""
    out = {}
    for key, value in state.items():
        name = vae_key(key, num_blocks)
        if ".mid.attn_1." in name and name.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # the original attention projections are 1x1 convolutions
        out[prefix + name] = value
    return out


def clip_l_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """transformers' CLIPTextModel (wrapped in ``text_model`` or, from 5.6, flat) under SDXL's first embedder."""
    return {CLIP_L_PREFIX + k.removeprefix("text_model."): v for k, v in state.items()}


_OPEN_CLIP_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                    "self_attn.out_proj": "attn.out_proj"}


def open_clip_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """CLIPTextModelWithProjection as OpenCLIP's tower: fused q/k/v, a transposed projection."""
    import torch

    out: dict[str, Any] = {}
    fused: dict[tuple[int, str], dict[str, Any]] = {}
    for key, value in state.items():
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
            continue
        key = key.removeprefix("text_model.")
        if key in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[key]] = value
            continue
        m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if m is None:
            raise ModelError(f"no OpenCLIP name for text encoder key {key!r} (not SDXL's text_encoder_2?)")
        layer, module, param = int(m.group(1)), m.group(2), m.group(3)
        qkv = re.fullmatch(r"self_attn\.(q|k|v)_proj", module)
        if qkv:
            fused.setdefault((layer, param), {})[qkv.group(1)] = value
        else:
            out[f"transformer.resblocks.{layer}.{_OPEN_CLIP_LAYER[module]}.{param}"] = value
    for (layer, param), parts in fused.items():
        out[f"transformer.resblocks.{layer}.attn.in_proj_{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return {OPEN_CLIP_PREFIX + k: v for k, v in out.items()}


def original_state_dict(unet, vae, text_encoder, text_encoder_2) -> dict[str, Any]:
    """All four SDXL components as one original-layout state dict (tensors as they are)."""
    merged = {}
    merged.update(unet_state_dict(unet.state_dict(), unet.config.layers_per_block))
    merged.update(vae_state_dict(vae.state_dict(), len(vae.config.block_out_channels)))
    merged.update(clip_l_state_dict(text_encoder.state_dict()))
    merged.update(open_clip_state_dict(text_encoder_2.state_dict()))
    return merged


def write_single_file(unet, vae, text_encoder, text_encoder_2, out: str | os.PathLike) -> Path:
    """Save SDXL components, in their dtypes, as one ``.safetensors`` checkpoint, atomically."""
    from safetensors.torch import save_file

    from omostc.files import atomic_path

    out = Path(out)
    tensors = {k: v.detach().contiguous().cpu()
               for k, v in original_state_dict(unet, vae, text_encoder, text_encoder_2).items()}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "written_by": "omostc"})
    return out


def is_sdxl_base_layout(path: str | os.PathLike) -> bool:
    """Whether a ``.safetensors`` file is shaped as SDXL base (its fine-tunes included), read from
    the header alone: the OpenCLIP tower's 10th block, a 4-channel UNet input (not an inpainting
    model) and no EDM statistics (not Playground v2.5, which diffusers configures differently)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        keys = set(handle.keys())
        conv_in = UNET_PREFIX + "input_blocks.0.0.weight"
        channels = handle.get_slice(conv_in).get_shape()[1] if conv_in in keys else None
    return SDXL_BASE_KEY in keys and channels == 4 and "edm_mean" not in keys

