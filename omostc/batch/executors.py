"""Where a batch's renders run: in this process (here), or on a Ray cluster (``ray_executor``).

Both executors take the same items and give the same results; the driver (this process) always
decides what to skip and writes every output and manifest row, so the two are interchangeable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from omostc.backends import registry
from omostc.backends.base import Backend, Noise, RenderOptions, Seed, image_seed
from omostc.batch.outputs import KEY_CHUNK, Stamp, png_bytes
from omostc.batch.profile import Profile
from omostc.batch.ray_executor import RayExecutor as RayExecutor  # re-exported: the executors live here
from omostc.batch.ray_executor import RenderWorker as RenderWorker
from omostc.settings import to_data
from omostc.spec.model import Scene

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
