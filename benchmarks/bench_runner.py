"""Batch throughput on the offline tiny model, 20 specs, measured in one run:

* loaded once (one ``omostc render`` for the whole batch) against loading the pipeline per spec
  (one ``omostc render`` per spec), in items per minute;
* the per-item overhead outside denoising (text encoding, lowering, decoding, PNG, manifest), as a
  share of the item's time, from a batch in this process;
* the Ray executor with 2 workers against 1;
* the bookkeeping: bytes written per item by a re-run with nothing to do, at two batch sizes
  (the preview backend, in this process; ``--only bookkeeping`` runs this part alone, in seconds).
  Constant cost per item shows as the same figure at both sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ITEMS = 20
STEPS = 25  # Omost's default; the tiny profile's 4 steps make decoding and writing look large


def make_specs(folder: Path) -> list[Path]:
    sources = sorted((REPO / "specs").glob("*.yaml"))
    out = []
    for i in range(ITEMS):
        target = folder / f"scene-{i:02d}.yaml"
        shutil.copy(sources[i % len(sources)], target)
        out.append(target)
    return out


def cli(args: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "omostc.cli", "render", *args, "-p", "tiny", "--steps", str(STEPS), "-q"],
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def in_process_overhead(specs: list[Path], out: Path) -> tuple[float, float]:
    """(wall seconds per item, denoising seconds per item) from a batch run here: everything the
    runner does per item (lowering, encoding, decoding, PNG, atomic writes, manifest) counts."""
    from omostc import load_spec
    from omostc.batch.executors import LocalExecutor, make_backend
    from omostc.batch.profile import load_profile
    from omostc.batch.runner import plan_items, run_batch

    profile = load_profile("tiny")
    backend = make_backend(profile)
    denoise = []
    sample = backend.sample

    def timed_sample(*args, **kwargs):
        t0 = time.perf_counter()
        result = sample(*args, **kwargs)
        denoise.append(time.perf_counter() - t0)
        return result

    backend.sample = timed_sample  # our own instance's method, wrapped for this measurement only
    items = plan_items([(str(s), load_spec(s)) for s in specs], profile, {"steps": STEPS})
    t0 = time.perf_counter()
    run_batch(items, LocalExecutor(lambda: backend), out, model_name="builtin:tiny-sdxl")
    return (time.perf_counter() - t0) / len(items), sum(denoise) / len(denoise)


def written_bytes() -> int:
    """Bytes this process has passed to write() so far (Linux's /proc/self/io ``wchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def noop_rerun_bytes(folder: Path, specs: list[Path], images: int) -> tuple[int, float, float]:
    """(items, bytes written per item, seconds per item) of a batch re-run with nothing to render:
    every item skipped, so what it writes is the bookkeeping."""
    from omostc.batch.api import render_batch

    out = folder / f"out-{len(specs) * images}"
    settings = {"width": 64, "height": 64}
    render_batch(specs, out_dir=out, settings=settings, images=images)  # the first run renders
    before, t0 = written_bytes(), time.perf_counter()
    report = render_batch(specs, out_dir=out, settings=settings, images=images)
    seconds, written = time.perf_counter() - t0, written_bytes() - before
    items = len(report.results)
    assert report.counts["skipped"] == items, report.counts
    return items, written / items, seconds / items


def bookkeeping(sizes: list[int]) -> None:
    if not Path("/proc/self/io").is_file():
        print("bookkeeping benchmark: needs Linux's /proc/self/io; skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        specs = make_specs(tmp)
        rows = [noop_rerun_bytes(tmp, specs, max(1, n // len(specs))) for n in sizes]
    print(f"bookkeeping: a re-run with nothing to render (preview backend, {len(specs)} specs x N/{len(specs)} seeds)")
    for items, per_item, seconds in rows:
        print(f"  {items:6d} items: {per_item:10,.0f} bytes written per item, {seconds * 1e3:6.2f} ms per item")
    print(f"  bytes per item, {rows[-1][0]} items / {rows[0][0]}: {rows[-1][1] / rows[0][1]:.2f}x (constant: ~1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["throughput", "bookkeeping"], help="run one part")
    parser.add_argument("--sizes", type=int, nargs=2, default=[410, 1640], metavar="N",
                        help="batch sizes of the bookkeeping part (items)")
    args = parser.parse_args()
    if args.only != "bookkeeping":
        throughput()
    if args.only != "throughput":
        bookkeeping(args.sizes)


def throughput() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "OMOSTC_CACHE": str(tmp / "cache"), "RAY_USAGE_STATS_ENABLED": "0"}
        specs = make_specs(tmp)
        cli([str(specs[0]), "-o", str(tmp / "warm")], env)  # builds the tiny model into the cache
        once = cli([*map(str, specs), "-o", str(tmp / "once")], env)
        per_spec = sum(cli([str(s), "-o", str(tmp / "per")], env) for s in specs)
        os.environ["OMOSTC_CACHE"] = env["OMOSTC_CACHE"]
        item_s, denoise_s = in_process_overhead(specs, tmp / "overhead")
        ray1 = cli([*map(str, specs), "-o", str(tmp / "ray1"), "--executor", "ray", "--workers", "1",
                    "--threads", "1"], env)
        ray2 = cli([*map(str, specs), "-o", str(tmp / "ray2"), "--executor", "ray", "--workers", "2",
                    "--threads", "1"], env)
    print(f"batch benchmark: {ITEMS} specs on the tiny profile (128 x 128, {STEPS} steps), CPU, {os.cpu_count()} cores")
    print(f"  loaded once (one command)              {ITEMS / once * 60:8.1f} items/min  ({once:.1f} s)")
    print(f"  loaded per spec (a command each)        {ITEMS / per_spec * 60:8.1f} items/min  ({per_spec:.1f} s)")
    print(f"  loaded once / per spec                 {per_spec / once:8.2f}x faster")
    print(f"  per item: {item_s * 1e3:.0f} ms, of which denoising {denoise_s * 1e3:.0f} ms: overhead outside "
          f"denoising {(item_s - denoise_s) / item_s:.1%} (goal < 5%)")
    print(f"  Ray, 1 worker, 1 thread                {ITEMS / ray1 * 60:8.1f} items/min  "
          f"({ray1:.1f} s, Ray start included)")
    print(f"  Ray, 2 workers, 1 thread each          {ITEMS / ray2 * 60:8.1f} items/min  ({ray2:.1f} s)")
    print(f"  Ray 2 workers / 1                      {ray1 / ray2:8.2f}x")


if __name__ == "__main__":
    main()
