"""Where a batch's renders run: in this process, or on a Ray cluster.

Both executors take the same items and give the same results; the driver (this process) always
decides what to skip and writes every output and manifest row, so the two are interchangeable.
The Ray executor keeps one long-lived actor per GPU (or per CPU worker), each holding a loaded
pipeline, and streams items to whichever is free; Ray restarts a failed actor and retries its
items.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import TypeVar

from omostc.backends import registry
from omostc.backends.base import Backend, Noise, RenderOptions, Seed, image_seed
from omostc.batch.outputs import KEY_CHUNK, Stamp, png_bytes
from omostc.batch.profile import Profile
from omostc.settings import to_data
from omostc.spec.model import Scene, scene_from_dict, scene_to_dict

# item index, PNG, seconds, error, warnings (of lowering the scene with the backend's own tokenizers)
RenderResult = tuple[int, bytes | None, float, str | None, list[str]]

T = TypeVar("T")


def make_backend(profile: Profile, threads: int | None = None) -> Backend:
    """The backend a profile names, with its model loaded. ``threads`` pins torch's CPU threads:
    CPU results are bit-identical only between runs with the same thread count."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    return registry.get(profile.backend).create(profile.model, profile.options, threads)


def stamp_of(profile: Profile, backend: Backend, options: RenderOptions, model_name: str | None = None) -> Stamp:
    return Stamp(backend=profile.backend, model=model_name or profile.model or profile.backend,
                 backend_options=to_data(profile.options), parameters=backend.parameters(options))


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _made(make: Callable[[], T]) -> tuple[T | None, str | None]:
    """(backend, None), or (None, why) for a backend that cannot be made: every item then fails
    with that reason, and the model is not tried again."""
    try:
        return make(), None
    except Exception as exc:  # noqa: BLE001 - reported per item, the batch goes on
        return None, _described(exc)


def render_pngs(backend: Backend, scene: Scene, options: RenderOptions, seeds: list[Seed], stamp: Stamp,
                progress=None, extra_text: dict[str, str] | None = None,
                warnings: list[str] | None = None) -> list[tuple[int, bytes]]:
    """Render a scene with a backend; PNG bytes (provenance embedded, as ``options.provenance``
    says) per seed. The warnings of lowering the scene go to ``warnings``."""
    ir = backend.lower(scene)
    if warnings is not None:
        warnings += [d.message for d in ir.warnings]
    images = backend.render(ir, options, seeds, progress=progress)
    return [(image_seed(seed), png_bytes(image, scene, options.snapped(), image_seed(seed), stamp, extra_text,
                                         seed if isinstance(seed, Noise) else None))
            for seed, image in zip(seeds, images)]


def _payload(index: int, item, model_name: str | None) -> dict:
    """What a Ray worker needs of an item, as plain data."""
    return {"index": index, "scene": scene_to_dict(item.scene), "options": asdict(item.options),
            "seed": item.seed, "key": item.key, "model": model_name,
            "noise": asdict(item.noise) if item.noise is not None else None}


def _render(backend: Backend, profile: Profile, index: int, scene, options: RenderOptions, seed: Seed, key: str,
            model_name: str | None, progress=None) -> RenderResult:
    started = time.perf_counter()
    warnings: list[str] = []
    try:
        stamp = stamp_of(profile, backend, options, model_name)
        ((_, data),) = render_pngs(backend, scene, options, [seed], stamp, progress=progress,
                                    extra_text={KEY_CHUNK: key}, warnings=warnings)
        return index, data, time.perf_counter() - started, None, warnings
    except Exception as exc:  # noqa: BLE001 - reported per item (a CUDA out-of-memory too); the batch goes on
        _free_accelerator_memory()
        return index, None, time.perf_counter() - started, _described(exc), warnings


def _free_accelerator_memory() -> None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class RayExecutor:
    """Renders items on Ray actors: a local instance by default, or a cluster by address."""

    def __init__(self, profile: Profile, workers: int | None = None, address: str | None = None,
                 threads: int | None = None, worker_cls: type[RenderWorker] | None = None):
        self.profile = profile
        self.workers = workers
        self.address = address
        self.threads = threads
        self.worker_cls = worker_cls or RenderWorker

    def map(self, items: list, model_name: str | None = None) -> Iterator[RenderResult]:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, logging_level=logging.ERROR)
        try:
            gpus = int(ray.cluster_resources().get("GPU", 0))
            count = self.workers or max(gpus, 1)
            threads = self.threads or 1
            remote = (ray.remote(num_gpus=1, max_restarts=2, max_task_retries=2) if gpus
                      else ray.remote(num_cpus=threads, max_restarts=2, max_task_retries=2))
            worker_cls = remote(self.worker_cls)
            actors = [worker_cls.remote(self.profile, threads) for _ in range(count)]
            yield from _stream(ray, actors, [_payload(i, item, model_name) for i, item in enumerate(items)])
        finally:
            if started_here:
                ray.shutdown()


def _stream(ray, actors: list, payloads: list[dict]) -> Iterator[RenderResult]:
    """Each payload to whichever actor is free, results as they finish. An item whose actor is
    lost for good (Ray's restarts and retries spent) is a failed item; the batch goes on."""
    pending = list(reversed(payloads))
    running: dict = {}  # object ref -> (actor, payload)

    def submit(actor) -> None:
        if pending:
            payload = pending.pop()
            running[actor.render.remote(payload)] = (actor, payload)

    for actor in actors:
        submit(actor)
    while running:
        (ref,), _ = ray.wait(list(running), num_returns=1)
        actor, payload = running.pop(ref)
        try:
            yield ray.get(ref)
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            yield payload["index"], None, 0.0, f"{type(exc).__name__}: {first}", []
        submit(actor)


class RenderWorker:
    """A Ray actor holding one loaded pipeline for its whole life."""

    def __init__(self, profile: Profile, threads: int):
        self.profile = profile
        self.backend, self.load_error = _made(lambda: make_backend(profile, threads))

    def render(self, payload: dict) -> RenderResult:
        if self.backend is None:  # not loaded: load_error says why
            return payload["index"], None, 0.0, self.load_error, []
        return _render(self.backend, self.profile, payload["index"], scene_from_dict(payload["scene"]),
                       RenderOptions.from_dict(payload["options"]),
                       Noise(**payload["noise"]) if payload.get("noise") else payload["seed"], payload["key"],
                       payload["model"])


class LocalExecutor:
    """Renders items in this process, the backend made once on first need."""

    def __init__(self, make: Callable[[], Backend], progress: Callable[..., None] | None = None,
                 profile: Profile | None = None):
        self.make = make
        self.profile = profile  # default: each item's own
        self.backend: Backend | None = None
        self.load_error: str | None = None
        self.progress = progress  # (item, its position, items, denoising step, steps)

    def map(self, items: list, model_name: str | None = None) -> Iterator[RenderResult]:
        progress = self.progress
        for index, item in enumerate(items):
            if self.backend is None and self.load_error is None:
                self.backend, self.load_error = _made(self.make)
            if self.backend is None:  # not loaded: load_error says why
                yield index, None, 0.0, self.load_error, []
                continue
            step = ((lambda i, n, item=item, k=index: progress(item, k + 1, len(items), i, n))
                    if progress else None)
            yield _render(self.backend, self.profile or item.profile, index, item.scene, item.options, item.draw,
                          item.key, model_name, step)
