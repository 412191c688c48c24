"""FLUX transformer time per denoising step for the README scene (specs/dragon.yaml: 1 global + 4
regions), regional joint attention against plain FLUX with the global prompt alone.

The model is FLUX-shaped (19 double-stream and 38 single-stream blocks, FLUX's head size 128 and
rotary axes, guidance embedding) but narrow (2 heads: width 256), built here with random
weights; the text is random, shaped like the scene's: each layer's prompt (prefixes and
sub-prompts, as the backend encodes it) counted with the offline CLIP tokenizer plus T5's
``</s>``, a stand-in for T5's count (both are subword tokenizers of about the same granularity).
Values do not change the cost. Plain and regional steps alternate, so a busy machine slows both.

Narrow models overstate attention's share of a step (at width 256 it is most of it; on FLUX.1's
3072 the linear layers are), and attention is where regions cost: the ratio here is an upper
bound for the full-size model (``bench_flux_gpu.py`` measures that one on a GPU).

Measured on the 2-core development machine (shared, --threads 1 --masked, 1024 x 1024, text
240 + 213 + 220 + 203 + 202 tokens): plain 19.2 CPU s/step, regional 24.1 (1.25x), the masked
fallback (one masked attention plus a base pass, the reference's structure) 42.3 (2.20x).

Usage: bench_flux.py [--res 1024] [--steps 2] [--heads 2] [--threads N] [--masked] [--lengths 240,210,...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GOAL = 1.3


def scene_lengths() -> tuple[list[int], list]:
    """(T5-like token count per layer, layers) of the README scene."""
    from omostc import load_spec, lower
    from omostc.ir.clip.tokenize import default_tokenizer

    layers = lower(load_spec(REPO / "specs" / "dragon.yaml")).layers
    texts = [" ".join(layer.prefixes + layer.suffixes) for layer in layers]
    return [len(ids) + 1 for ids in default_tokenizer().encode(texts)], layers


def narrow_flux(heads: int):
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                  attention_head_dim=128, num_attention_heads=heads, joint_attention_dim=64,
                                  pooled_projection_dim=64, guidance_embeds=True, axes_dims_rope=(16, 56, 56)).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res", type=int, default=1024, help="image height and width (default 1024: FLUX's)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps of each kind (after one warm-up)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--heads", type=int, default=2, help="attention heads of 128 (FLUX.1: 24)")
    parser.add_argument("--masked", action="store_true", help="also time the masked fallback (no log-sum-exp split)")
    parser.add_argument("--lengths", help="T5 tokens per layer, comma-separated, global first (default: the scene's)")
    args = parser.parse_args()

    import torch

    from omostc.backends.flux.attention import RegionalAttention, RegionalAttentionOptions, token_masks

    if args.threads:
        torch.set_num_threads(args.threads)

    lengths, layers = scene_lengths()
    if args.lengths:
        lengths = [int(x) for x in args.lengths.split(",")]
        layers = layers[:len(lengths)]
    masks = token_masks(layers, args.res, args.res)
    rows = cols = args.res // 16
    model = narrow_flux(args.heads)
    g = torch.Generator().manual_seed(0)
    text = torch.randn(1, sum(lengths), 64, generator=g)
    latents = torch.randn(1, rows * cols, 64, generator=g)
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1], ids[..., 2] = torch.arange(rows)[:, None], torch.arange(cols)[None, :]
    common = dict(hidden_states=latents, pooled_projections=torch.randn(1, 64, generator=g),
                  timestep=torch.tensor([0.9]), guidance=torch.tensor([3.5]), img_ids=ids.reshape(-1, 3),
                  return_dict=False)

    def step(tokens: int) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            model(encoder_hidden_states=text[:, :tokens], txt_ids=torch.zeros(tokens, 3), **common)
        return time.perf_counter() - start, time.process_time() - cpu

    variants = {"regional": RegionalAttention(lengths, masks, RegionalAttentionOptions())}
    if args.masked:
        variants["masked"] = RegionalAttention(lengths, masks, RegionalAttentionOptions(), split_softmax=False)
    times: dict[str, list[tuple[float, float]]] = {"plain": [], **{name: [] for name in variants}}
    print(f"narrow FLUX (19 + 38 blocks, {args.heads} x 128), {args.res} x {args.res} ({rows * cols} image tokens), "
          f"CPU fp32, {torch.get_num_threads()} threads; text tokens per layer {lengths} "
          f"(plain: {lengths[0]}, regional: {sum(lengths)})", flush=True)
    for i in range(args.steps + 1):
        for name in times:
            if name == "plain":
                seconds = step(lengths[0])
            else:
                with variants[name].installed(model):
                    variants[name].set_step(0, 24)
                    seconds = step(sum(lengths))
            if i:
                times[name].append(seconds)
            print(f"  {'warm-up' if i == 0 else f'step {i}'} {name}: {seconds[0]:.2f} s ({seconds[1]:.2f} CPU s)",
                  flush=True)
    med = {name: [statistics.median(v[j] for v in values) for j in (0, 1)] for name, values in times.items()}
    print(f"{'variant':<10} {'s/step':>8} {'x plain':>8} {'CPU s':>8} {'x plain':>8}")
    for name, (wall, cpu) in med.items():
        print(f"{name:<10} {wall:>8.2f} {wall / med['plain'][0]:>8.2f} {cpu:>8.2f} {cpu / med['plain'][1]:>8.2f}")
    ratio = med["regional"][1] / med["plain"][1]
    print(f"regional / plain = {ratio:.2f} in CPU time, {med['regional'][0] / med['plain'][0]:.2f} in wall time "
          f"(goal <= {GOAL}): {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
