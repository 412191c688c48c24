"""UNet time per denoising step for the README scene (1 global + 4 regions), regional attention
(fused) against (a) plain SDXL attention on a one-chunk prompt, CFG batched, and (b) Omost's
formulation (scores materialised, masks resized at every call, two UNet calls per step).

Each variant runs in its own process so its peak memory is its own; the ratios come from one
run of this script. The UNet has random weights and the text conditioning is random, shaped
like the README scene's (token counts from lowering it), since neither changes the cost.

Usage: bench_render.py [--size small|tiny|full] [--res 512] [--steps 5] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("fast", "plain", "omost")
sys.path.insert(0, str(REPO / "tests"))

from omost_pipeline_reference import use_omost_cross_attention  # noqa: E402  (Omost's processor, literally)


def scene_conditioning(unet):
    """Random text conditioning shaped like the README scene's (the UNet's cost does not depend
    on the values): token counts from lowering it with the offline CLIP tokenizer."""
    import torch

    from omostc import load_spec, lower
    from omostc.backends.sdxl.encode import Conditioning
    from omostc.ir.clip.tokenize import default_tokenizer

    ir = lower(load_spec(REPO / "specs" / "dragon.yaml"), default_tokenizer())
    dim = unet.config.cross_attention_dim
    pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
    g = torch.Generator().manual_seed(0)
    layers = [torch.randn(77 * len(layer.bags), dim, generator=g) for layer in ir.text.layers]
    return ir, Conditioning(layers=layers, pooled=torch.randn(pooled, generator=g),
                            negative=torch.randn(77, dim, generator=g),
                            negative_pooled=torch.randn(pooled, generator=g))


def run_variant(variant: str, size: str, res: int, steps: int, device: str) -> dict:
    import torch
    from diffusers import UNet2DConditionModel

    from omostc.backends.sdxl.attention import RegionalAttention, RegionPlan, latent_resolutions
    from omostc.backends.sdxl.render import unet_inputs
    from omostc.backends.sdxl.tiny import unet_config

    torch.manual_seed(0)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    unet = UNet2DConditionModel(**unet_config(size)).to(device, dtype).eval()
    ir, cond = scene_conditioning(unet)
    lat = res // 8
    x = torch.randn(1, 4, lat, lat, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    one = unet_inputs(cond, 1, res, res, device, dtype)
    added = {"text_embeds": one.text_embeds, "time_ids": one.time_ids}
    render = contextlib.ExitStack()
    if variant == "fast":
        attention = RegionalAttention(unet, "fast")
        # One render for all steps, so keys and values are projected once, as in a real render.
        render.enter_context(attention.active(RegionPlan.build(ir, [c.shape[0] for c in cond.layers], lat, lat, 1)))

        def step():
            unet(torch.cat([x, x]), t, encoder_hidden_states=one.encoder_hidden_states, added_cond_kwargs=added)
    elif variant == "plain":
        enc = one.encoder_hidden_states[:, :77]  # a one-chunk prompt per half

        def step():
            unet(torch.cat([x, x]), t, encoder_hidden_states=enc, added_cond_kwargs=added)
    else:
        holder = {"resolutions": latent_resolutions(lat, lat)}
        use_omost_cross_attention(unet, holder)
        ones = torch.ones(90, 90, device=device)
        positive = [(torch.from_numpy(layer.mask(90, 90).astype("float32")).to(device), c[None].to(device, dtype))
                    for layer, c in zip(ir.layers, cond.layers)]
        negative = [(ones, cond.negative[None].to(device, dtype))]
        dummy = one.encoder_hidden_states[:1, :77]
        kw_neg = {k: v[:1] for k, v in added.items()}
        kw_pos = {k: v[1:] for k, v in added.items()}

        def step():
            holder["conds"] = positive
            unet(x, t, encoder_hidden_states=dummy, added_cond_kwargs=kw_pos)
            holder["conds"] = negative
            unet(x, t, encoder_hidden_states=dummy, added_cond_kwargs=kw_neg)

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with render, torch.inference_mode():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # model and inputs are in
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()  # weights and inputs, as for the CPU
        step()
        sync()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - t0)
    peak = ((torch.cuda.max_memory_allocated() - before) / 2**20 if device.startswith("cuda")
            else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    return {"variant": variant, "step_s": sorted(times)[len(times) // 2], "peak_mib": peak,
            "tokens": int(sum(c.shape[0] for c in cond.layers)),
            "cross_attn": sum(1 for n in unet.attn_processors if n.endswith("attn2.processor"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small", choices=["small", "tiny", "full"],
                    help="UNet: SDXL's layout narrow (small), tinier, or SDXL's own (full, 2.6B parameters)")
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variant", choices=VARIANTS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.size, args.res, args.steps, args.device)))
        return
    results = {}
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--size", args.size, "--res",
                              str(args.res), "--steps", str(args.steps), "--device", args.device],
                             capture_output=True, text=True, check=True)
        results[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    f, p, o = (results[v] for v in VARIANTS)
    print(f"render benchmark: {args.size} SDXL-shaped UNet, random weights ({f['cross_attn']} cross-attention layers), "
          f"{args.res} x {args.res}, {args.device}, README scene (1 global + 4 regions, {f['tokens']} tokens), "
          f"median of {args.steps} steps")
    for name, r in (("regional, fused (omostc)", f), ("(a) plain attention, 77 tokens, CFG batched", p),
                    ("(b) Omost's formulation, two calls per step", o)):
        print(f"  {name:46s} {r['step_s'] * 1e3:9.1f} ms/step   peak +{r['peak_mib']:8.1f} MiB over the weights")
    print(f"  fused / plain                                  {f['step_s'] / p['step_s']:9.2f}x  (goal <= 1.15x)")
    print(f"  Omost / fused (speed-up)                       {o['step_s'] / f['step_s']:9.2f}x  (goal >= 1.5x)")
    if not math.isclose(p["peak_mib"], 0.0):
        print(f"  peak memory fused / plain                      {f['peak_mib'] / max(p['peak_mib'], 1e-9):9.2f}x")


if __name__ == "__main__":
    main()
