"""FLUX.1 transformer on a GPU: seconds per denoising step and peak memory, plain (0 regions) and
with regional joint attention for 2, 4, 8 and 16 regions, against Regional-Prompting-FLUX's chart.

The transformer has FLUX.1-dev's configuration (diffusers' FluxTransformer2DModel defaults: 19
double-stream and 38 single-stream blocks, width 3072, 24 heads of 128, guidance embedding) and
random weights made on the device in bf16 (built on the meta device, ``to_empty``, filled with
small normal values: seconds, no download). 1024 x 1024 (4096 image tokens), batch 1. Text:
the global layer 120 T5 tokens, each region 60 (plain FLUX gets the global layer's 120). Regions
tile the image in a grid (2: halves; 4: quarters; 8: a 3 x 3 grid less one cell; 16: 4 x 4),
each with its own text. Each configuration runs warm-up steps, then the median of the timed
steps (``torch.cuda.synchronize`` around each); the peak is ``torch.cuda.max_memory_allocated``
over its steps. The regional steps use the default options (every block masked, base_ratio 0.3).

Needs only python3, torch, diffusers and this repository: it imports omostc's attention module
without running the package's ``__init__`` files. About a minute on an H100.

Usage: PYTHONPATH=. python3 benchmarks/bench_flux_gpu.py [--regions 0,2,4,8,16] [--steps 5] [--masked]
       python3 benchmarks/bench_flux_gpu.py --device cpu --tiny      (a smoke test of this script)
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56))
TINY = dict(FULL, num_layers=2, num_single_layers=2, num_attention_heads=2, joint_attention_dim=64,
            pooled_projection_dim=32)
GLOBAL_TOKENS, REGION_TOKENS = 120, 60
# Regional-Prompting-FLUX's chart (paper, FLUX.1-dev, one GPU): regions -> (seconds per image, GB)
PAPER = {0: (18, 34), 2: (23, 41), 4: (36, None), 8: (46, None), 16: (63, 42)}


def load_attention():
    """omostc.backends.flux.attention (and the fused.py it imports), without running the omostc
    package's ``__init__`` files, which need more than torch and diffusers."""
    for name in ("omostc", "omostc.backends", "omostc.backends.flux"):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(REPO.joinpath(*name.split(".")))]
            sys.modules[name] = module
    return importlib.import_module("omostc.backends.flux.attention")


def random_transformer(config: dict, device: str, dtype):
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(**config)
    model = model.to(dtype).to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0)
            elif p.ndim == 1:
                p.zero_()
            else:
                p.normal_(0.0, 0.02, generator=g)
    return model.eval()


def tile_masks(regions: int, rows: int, cols: int):
    """(1 + regions, rows x cols) bool: the global layer, then the regions as grid tiles."""
    import torch

    masks = torch.zeros(1 + regions, rows, cols, dtype=torch.bool)
    masks[0] = True
    across = math.ceil(math.sqrt(regions)) if regions else 1
    down = math.ceil(regions / across) if regions else 1
    for i in range(regions):
        r, c = divmod(i, across)
        masks[1 + i, r * rows // down:(r + 1) * rows // down, c * cols // across:(c + 1) * cols // across] = True
    return masks.reshape(1 + regions, -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2 + 2 block, 2-head model (smoke test)")
    parser.add_argument("--res", type=int, default=1024, help="image height and width (default 1024)")
    parser.add_argument("--regions", default="0,2,4,8,16", help="region counts (0: plain FLUX)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--masked", action="store_true", help="also time the masked fallback (no log-sum-exp split)")
    args = parser.parse_args()

    import torch

    attention = load_attention()
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    config = TINY if args.tiny else FULL
    start = time.perf_counter()
    model = random_transformer(config, args.device, dtype)
    params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"FluxTransformer2DModel ({config['num_layers']} + {config['num_single_layers']} blocks, "
          f"{config['num_attention_heads']} x {config['attention_head_dim']}, {params:.2f} B parameters, {dtype}) "
          f"on {torch.cuda.get_device_name(args.device) if cuda else args.device} in "
          f"{time.perf_counter() - start:.1f} s; torch {torch.__version__}", flush=True)
    rows = cols = args.res // 16
    counts = [int(x) for x in args.regions.split(",")]
    g = torch.Generator(device=args.device).manual_seed(1)
    text = torch.randn(1, GLOBAL_TOKENS + REGION_TOKENS * max(counts), config["joint_attention_dim"], generator=g,
                       device=args.device, dtype=dtype)
    ids = torch.zeros(rows, cols, 3, device=args.device)
    ids[..., 1] = torch.arange(rows, device=args.device)[:, None]
    ids[..., 2] = torch.arange(cols, device=args.device)[None, :]
    common = dict(hidden_states=torch.randn(1, rows * cols, 64, generator=g, device=args.device, dtype=dtype),
                  pooled_projections=torch.randn(1, config["pooled_projection_dim"], generator=g, device=args.device,
                                                 dtype=dtype),
                  timestep=torch.tensor([0.9], device=args.device, dtype=dtype),
                  guidance=torch.tensor([3.5], device=args.device, dtype=dtype),
                  img_ids=ids.reshape(-1, 3).to(dtype), return_dict=False)

    def sync():
        if cuda:
            torch.cuda.synchronize(args.device)

    def measure(tokens: int, label: str) -> tuple[float, float | None]:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(args.device)
        times = []
        for i in range(args.warmup + args.steps):
            sync()
            begin = time.perf_counter()
            with torch.inference_mode():
                out = model(encoder_hidden_states=text[:, :tokens],
                            txt_ids=torch.zeros(tokens, 3, device=args.device, dtype=dtype), **common)[0]
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - begin)
            if not torch.isfinite(out).all():
                print(f"  {label}: non-finite output (random weights); timings still count", flush=True)
        peak = torch.cuda.max_memory_allocated(args.device) / 2 ** 30 if cuda else None
        return statistics.median(times), peak

    results = []
    print(f"{rows * cols} image tokens; text: global {GLOBAL_TOKENS} + {REGION_TOKENS} per region; "
          f"{args.warmup} warm-up + {args.steps} timed steps each", flush=True)
    for regions in counts:
        variants = [("plain", None)] if regions == 0 else [("fused", True)]
        if regions and args.masked:
            variants.append(("masked", False))
        for name, split in variants:
            tokens = GLOBAL_TOKENS + REGION_TOKENS * regions
            label = f"{regions} regions, {name}"
            print(f"  {label}: {tokens} text tokens ...", flush=True)
            if split is None:
                seconds, peak = measure(tokens, label)
                note = ""
            else:
                lengths = [GLOBAL_TOKENS] + [REGION_TOKENS] * regions
                ra = attention.RegionalAttention(lengths, tile_masks(regions, rows, cols), split_softmax=split)
                with ra.installed(model):
                    ra.set_step(0, 24)
                    seconds, peak = measure(tokens, label)
                plan = ra.plan(model.device, dtype)  # the one the processors used
                note = (f"groups {'dense' if plan.groups is None else len(plan.groups)}, region texts "
                        f"{'dense' if plan.region_pixels is None else 'gathered'}, "
                        f"{'split' if plan.split and split else 'masked'}"
                        f"{', masked kernel' if plan.masked_lse else ', chunked'}")
            results.append((regions, name, seconds, peak, note))
            print(f"  {label}: {seconds:.3f} s/step" + (f", peak {peak:.1f} GiB" if peak else "") + f" {note}",
                  flush=True)

    plain = next((r for r in results if r[0] == 0), None)
    print(f"\n{'regions':>7} {'variant':<7} {'s/step':>7} {'x plain':>7} {'peak GiB':>8} {'x plain':>7}   "
          f"paper: s/image (x plain), GB")
    for regions, name, seconds, peak, _ in results:
        ratio = f"{seconds / plain[2]:.2f}" if plain else "-"
        mem = f"{peak:.1f}" if peak is not None else "-"
        mem_ratio = f"{peak / plain[3]:.2f}" if plain and peak and plain[3] else "-"
        paper_s, paper_gb = PAPER.get(regions, (None, None))
        paper = f"{paper_s} s ({paper_s / PAPER[0][0]:.2f})" if paper_s else "-"
        paper += f", {paper_gb}" if paper_gb else ""
        print(f"{regions:>7} {name:<7} {seconds:>7.3f} {ratio:>7} {mem:>8} {mem_ratio:>7}   {paper}")


if __name__ == "__main__":
    main()
