"""Full-size check of single-file loading (too big for CI: about 7 GB of disk, 15 GB of memory).

Builds SDXL base's four networks with random bf16 weights from the offline configuration, writes
them as one original-layout .safetensors, loads that through ``load_sdxl`` with no configuration
and the hub switched off, compares every tensor, and renders one small image through it.
Exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write the checkpoint and the cache, and keep them "
                                      "(default: a temporary folder, removed at the end)")
    args = parser.parse_args()
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        return check(Path(args.dir))
    with tempfile.TemporaryDirectory(prefix="omostc-full-") as work:
        return check(Path(work))


def check(work: Path) -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may come from the hub
    os.environ["OMOSTC_CACHE"] = str(work / "cache")

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from omostc import load_spec, lower
    from omostc.backends.base import RenderOptions
    from omostc.backends.sdxl.checkpoint import write_single_file
    from omostc.backends.sdxl.configs import sdxl_base_config
    from omostc.backends.sdxl.models import load_sdxl
    from omostc.backends.sdxl.render import SDXLRegionalBackend

    t = time.perf_counter()
    config = sdxl_base_config()
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    try:
        parts = {
            "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
            "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(config / "text_encoder")),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config / "text_encoder_2")),
        }
    finally:
        torch.set_default_dtype(torch.float32)
    print(f"built SDXL base's networks (random bf16): {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    path = write_single_file(*parts.values(), work / "sdxl-random.safetensors")
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB): {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    model = load_sdxl(path, dtype="bf16", device="cpu")  # no config: SDXL base's, offline
    print(f"load_sdxl(single file, no config, HF_HUB_OFFLINE=1): {time.perf_counter() - t:.1f} s")
    failed = 0
    for name, module in parts.items():
        a, b = module.state_dict(), getattr(model, name).state_dict()
        differ = sorted(set(a) ^ set(b)) + [k for k in a.keys() & b.keys() if not torch.equal(a[k], b[k])]
        failed += bool(differ)
        print(f"  {name}: {len(a)} tensors, {len(differ)} differ {differ[:3]}")
    del parts

    backend = SDXLRegionalBackend(model)
    scene = load_spec(Path(__file__).resolve().parents[1] / "specs" / "dragon.yaml")
    t = time.perf_counter()
    (image,) = backend.render(lower(scene, backend.tokenizer), RenderOptions(width=128, height=128, steps=2), [1])
    print(f"rendered {image.size[0]}x{image.size[1]}, 2 steps: {time.perf_counter() - t:.1f} s")
    print("single-file check:", "FAILED" if failed else "ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
