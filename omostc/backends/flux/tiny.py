"""The offline random-weight FLUX-shaped model, written in the diffusers layout so tests and
benchmarks load it through the same ``from_pretrained`` code as FLUX.1-dev or -schnell.

Its tokenizers are built offline: CLIP's BPE as the SDXL tiny model's (the real 49,408-entry
vocabulary), and a small T5-style unigram tokenizer (``tokenizers``' Unigram model with T5's
pre-tokenizer, ``</s>`` appended, ``<pad>`` = 0) whose pieces come from CLIP's vocabulary in a
fixed order, so the same build gives the same ids on every machine (no trainer, no threads).
"""

from __future__ import annotations

import math
import os
import re
import string
from pathlib import Path
from typing import Any

from omostc.backends.common.cache import built_once
from omostc.diagnostics import ModelError

BUILTIN_TINY = "builtin:tiny-flux"
SIZES = ("tiny", "small")
T5_SPECIALS = ("<pad>", "</s>", "<unk>")
META = "\u2581"  # SentencePiece's word-start mark
T5_VOCAB = 16_000  # pieces of the offline T5-style vocabulary (T5's own: 32,100)

# tiny: seconds per CPU render (CI); small: FLUX.1's 19 double-stream and 38 single-stream blocks,
# narrow (2 heads of 64), for benchmarks of the attention cost per block.
TRANSFORMER: dict[str, dict[str, Any]] = {
    "tiny": dict(num_layers=2, num_single_layers=4, attention_head_dim=16, num_attention_heads=2,
                 axes_dims_rope=(4, 6, 6)),
    "small": dict(num_layers=19, num_single_layers=38, attention_head_dim=64, num_attention_heads=2,
                  axes_dims_rope=(8, 28, 28)),
}
TEXT: dict[str, dict[str, int]] = {"tiny": dict(clip=32, t5=32, layers=2), "small": dict(clip=64, t5=128, layers=4)}


def t5_vocabulary(size: int = T5_VOCAB) -> list[tuple[str, float]]:
    """A T5-style unigram vocabulary of ``size`` pieces: the specials (``<pad>`` 0, ``</s>`` 1,
    ``<unk>`` 2); every printable character, alone and word-initial (the fallback); then CLIP's
    BPE entries made of letters and digits in their merge order (earlier merges are the more
    frequent pieces), a whole word (``cat</w>``) as a word-initial piece (``\u2581cat``), scored
    by its rank (``-log(rank + 2)``), so common words are one token as in T5."""
    from omostc.ir.clip.tokenize import find_clip_vocab, read_clip_bpe

    vocab, _ = read_clip_bpe(find_clip_vocab())
    pieces: dict[str, float] = {}
    for token in sorted(vocab, key=vocab.__getitem__)[512:]:  # after the 2 x 256 byte symbols
        word = token.removesuffix("</w>")
        if not re.fullmatch(r"[a-z0-9]+", word):
            continue
        pieces.setdefault(META + word if token.endswith("</w>") else word, -math.log(len(pieces) + 2))
        if len(pieces) >= size - len(T5_SPECIALS) - 2 * len(string.printable):
            break
    floor = min(pieces.values()) - 4.0  # characters: never preferred to a known piece
    for ch in [META, *string.printable.strip()]:
        pieces.setdefault(ch, floor)
        pieces.setdefault(META + ch, floor - 0.5)
    return [(s, 0.0) for s in T5_SPECIALS] + sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))


def write_t5_tokenizer(folder: str | os.PathLike, max_length: int = 512) -> Path:
    """Save the offline T5-style tokenizer in the Hugging Face layout of a ``tokenizer_2/`` folder."""
    from transformers import T5Tokenizer  # tokenizers-backed in transformers 5 (T5TokenizerFast is its alias)

    folder = Path(folder)
    tokenizer = T5Tokenizer(vocab=t5_vocabulary(), extra_ids=0, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_flux(folder: str | os.PathLike, *, seed: int = 0, size: str = "tiny", guidance: bool = True) -> Path:
    """Write a random-weight FLUX.1-shaped pipeline in the diffusers layout.

    The transformer has FLUX's structure (double- then single-stream blocks, rotary position ids
    over three axes, the pooled CLIP projection, and a guidance embedding as FLUX.1-dev has
    unless ``guidance=False``, as -schnell); ``size`` sets its depth and width (``TRANSFORMER``).
    The VAE has 16 latent channels and downsamples by 8, with FLUX's scaling and shift factors,
    so latents pack into 2 x 2 patches exactly as FLUX's; the scheduler is FLUX.1-dev's (-schnell's
    without guidance).
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

    from omostc.ir.clip.tokenize import write_tokenizer_folder

    if size not in SIZES:
        raise ModelError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    folder = Path(folder)
    text = TEXT[size]
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=text["clip"], intermediate_size=text["clip"] * 2,
        num_hidden_layers=text["layers"], num_attention_heads=4, max_position_embeddings=77,
        projection_dim=text["clip"], bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        hidden_act="quick_gelu"))
    write_tokenizer_folder(folder / "tokenizer")
    write_t5_tokenizer(folder / "tokenizer_2")
    tokenizer_2 = T5Tokenizer.from_pretrained(folder / "tokenizer_2")
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=text["t5"], d_kv=8, d_ff=text["t5"] * 2, num_layers=text["layers"],
        num_heads=4, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
        relative_attention_max_distance=128, pad_token_id=0, eos_token_id=1,
        is_encoder_decoder=False, use_cache=False))
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, joint_attention_dim=text["t5"], pooled_projection_dim=text["clip"],
        guidance_embeds=guidance, **TRANSFORMER[size])
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, layers_per_block=1, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32), scaling_factor=0.3611, shift_factor=0.1159, sample_size=128,
        use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(  # dev's: shifted by the token count; schnell's: no shift
        num_train_timesteps=1000, shift=3.0 if guidance else 1.0, use_dynamic_shifting=guidance, base_shift=0.5,
        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=clip,
                        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"), text_encoder_2=t5,
                        tokenizer_2=tokenizer_2, transformer=transformer)
    # mypy sees diffusers' top-level FluxPipeline as its dummy placeholder class
    pipe.save_pretrained(folder, safe_serialization=True)  # type: ignore[attr-defined]
    return folder


def resolve_model(model: str | os.PathLike) -> str:
    """``builtin:tiny-flux`` is built once into the cache (atomically); another ``builtin:`` name
    is a ModelError; anything else is as given."""
    if str(model).startswith("builtin:") and str(model) != BUILTIN_TINY:
        raise ModelError(f"no built-in FLUX model {str(model)!r}: the flux backend has {BUILTIN_TINY}")
    if str(model) != BUILTIN_TINY:
        return str(model)
    return str(built_once("tiny-flux-seed0", lambda folder: build_tiny_flux(folder, seed=0)))
