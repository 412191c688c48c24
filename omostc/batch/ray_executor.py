"""Renders on Ray: one long-lived actor per GPU (or per CPU worker), each holding a loaded pipeline.

``import ray`` happens only when a batch runs here. Items stream to whichever worker is free;
the driver writes every output and manifest row, as with the local executor.

Workers that die (their process ends: a crash, the out-of-memory killer, a lost node):
- Ray restarts a worker whose process died up to ``RESTARTS`` times; after that it is gone for
  good. The driver learns which by asking the worker to report ready again: a worker is given
  items only once it has answered, so one that is gone for good is given nothing more.
- The item a worker died on goes back to the front of the queue, for a worker it has not killed
  yet where there is one. An item is rendered at most ``MAX_ATTEMPTS`` times in all: one that
  kills every worker that takes it (a poisoned input) fails on its own, and the rest go on.
- When every worker is gone for good, the items left fail at once, with the reason.
A local instance started here is stopped at the end, and a watchdog (``ray_watchdog``) kills it
if this process dies first; a cluster given by address is only disconnected from.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from omostc.backends.base import Backend, Noise, RenderOptions
from omostc.batch.profile import Profile
from omostc.batch.ray_watchdog import children_of, start_watchdog, stop_watchdog
from omostc.spec.model import scene_from_dict, scene_to_dict

if TYPE_CHECKING:  # executors re-exports this module's classes, so its helpers are imported where used
    from omostc.batch.executors import RenderResult

RESTARTS = 2  # times Ray restarts a worker whose process died, before it is gone for good
MAX_ATTEMPTS = 3  # renders of one item, each interrupted by its worker's death, before it fails
UNAVAILABLE_PROBES = 20  # "temporarily unavailable" answers in a row before a worker counts as gone,
UNAVAILABLE_WAIT_S = 0.5  # each after this wait: 10 s in all
CONNECT_TIMEOUT_S = 10.0  # to reach a cluster's address (Ray itself retries for minutes)


class RayExecutor:
    """Renders items on Ray actors: a local instance by default, or a cluster by address."""

    def __init__(self, profile: Profile, workers: int | None = None, address: str | None = None,
                 threads: int | None = None, worker_cls: type[RenderWorker] | None = None):
        self.profile = profile
        self.workers = workers
        self.address = address
        self.threads = threads
        self.worker_cls = worker_cls or RenderWorker  # tests give workers that die

    def map(self, items: list, model_name: str | None = None) -> Iterator[RenderResult]:
        if not items:
            return
        payloads = [_payload(i, item, model_name) for i, item in enumerate(items)]
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray

        connected_here = not ray.is_initialized()
        watchdog = None
        if connected_here:
            before = children_of(os.getpid())
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
            why = _unreachable(self.address)  # checked first: Ray itself retries for minutes
            if why is None:
                try:
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                             ignore_reinit_error=True, logging_level=logging.ERROR)
                except Exception as exc:  # noqa: BLE001 - an unreachable cluster: every item fails with the reason
                    why = _first_line(exc)
            if why is not None:
                yield from ((p["index"], None, 0.0, f"cannot connect to {where}: {why}", []) for p in payloads)
                return
            if self.address is None:  # a local instance of our own: it must not outlive this process
                watchdog = start_watchdog(before)
        actors: list = []
        try:
            resources = ray.cluster_resources()
            gpus, cpus = int(resources.get("GPU", 0)), resources.get("CPU", 0)
            count = self.workers or max(gpus, 1)
            threads = self.threads or 1
            if not gpus and threads > cpus:  # Ray would wait for room that never comes
                reason = f"a Ray worker needs {threads} CPUs (--threads) and the cluster has {cpus:g}"
                yield from ((p["index"], None, 0.0, reason, []) for p in payloads)
                return
            remote = (ray.remote(num_gpus=1, max_restarts=RESTARTS, max_task_retries=0) if gpus
                      else ray.remote(num_cpus=threads, max_restarts=RESTARTS, max_task_retries=0))
            worker_cls = remote(self.worker_cls)
            actors = [worker_cls.remote(self.profile, threads) for _ in range(count)]
            yield from _stream(ray, actors, payloads)
        finally:
            for actor in actors:
                ray.kill(actor)
            if connected_here:
                ray.shutdown()
            stop_watchdog(watchdog)


@dataclass
class _Item:
    payload: dict
    attempts: int = 0
    killed: set[int] = field(default_factory=set)  # the workers that died rendering it


def _stream(ray, actors: list, payloads: list[dict]) -> Iterator[RenderResult]:
    """Each payload to a free, live worker; results as they finish (see the module's notes)."""
    pending = [_Item(p) for p in payloads]
    live = set(range(len(actors)))
    idle: set[int] = set()
    unavailable = dict.fromkeys(live, 0)
    running: dict[Any, tuple[int, _Item | None]] = {}  # object ref -> (worker, item; None: a readiness probe)
    lost = ""  # why the last worker was lost for good

    def probe(worker: int) -> None:
        running[actors[worker].ready.remote()] = (worker, None)

    for worker in live:
        probe(worker)
    while pending or any(item is not None for _, item in running.values()):
        if not live or not running:  # (with live workers, one is busy: an idle one takes what no other can)
            why = f"every Ray worker ({len(actors)}) died (the last: {lost})" if not live else "no Ray worker took it"
            for left in pending:
                yield left.payload["index"], None, 0.0, f"not rendered: {why}", []
            return
        (ref,), _ = ray.wait(list(running), num_returns=1)
        worker, item = running.pop(ref)
        try:
            result = ray.get(ref)
        except ray.exceptions.RayActorError as exc:  # the worker's process died, or is out of reach for now
            if item is not None:
                item.attempts += 1
                item.killed.add(worker)
                if item.attempts >= MAX_ATTEMPTS:
                    yield (item.payload["index"], None, 0.0, f"not rendered: the Ray worker rendering it died "
                           f"{item.attempts} times (the last: {_first_line(exc)})", [])
                else:
                    pending.insert(0, item)
                probe(worker)  # answers once Ray has restarted it; fails if it is gone for good
            elif isinstance(exc, ray.exceptions.ActorUnavailableError) and unavailable[worker] < UNAVAILABLE_PROBES:
                unavailable[worker] += 1
                time.sleep(UNAVAILABLE_WAIT_S)
                probe(worker)
            else:  # gone for good: Ray spent its restarts
                live.discard(worker)
                lost = _first_line(exc)
        except ray.exceptions.RayError as exc:  # the task failed, the worker lives
            if item is not None:
                yield item.payload["index"], None, 0.0, _first_line(exc), []
            idle.add(worker)
        else:
            unavailable[worker] = 0
            if item is not None:
                yield result
            idle.add(worker)
        for free in sorted(idle & live):
            chosen = _choose(pending, free, live)
            if chosen is not None:
                pending.remove(chosen)
                idle.discard(free)
                running[actors[free].render.remote(chosen.payload)] = (free, chosen)


def _choose(pending: list[_Item], worker: int, live: set[int]) -> _Item | None:
    """The first item this worker has not died on; one it has died on only when every live
    worker has (another worker may take it, or is busy and will)."""
    for item in pending:
        if worker not in item.killed or live <= item.killed:
            return item
    return None


def _unreachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing answers at a cluster's ``host:port`` (None: something does, or another form
    of address such as ``auto`` or ``ray://``, left to Ray)."""
    address = address or ""
    host, _, port = address.rpartition(":")
    if not host or "://" in address or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return f"nothing answers at {address} ({exc.strerror or exc})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _payload(index: int, item, model_name: str | None) -> dict:
    """What a Ray worker needs of an item, as plain data."""
    return {"index": index, "scene": scene_to_dict(item.scene), "options": asdict(item.options),
            "seed": item.seed, "key": item.key, "model": model_name,
            "noise": asdict(item.noise) if item.noise is not None else None}


class RenderWorker:
    """A Ray actor holding one loaded pipeline for its whole life."""

    def __init__(self, profile: Profile, threads: int):
        from omostc.batch.executors import _made, make_backend

        self.profile = profile
        self.backend: Backend | None
        self.backend, self.load_error = _made(lambda: make_backend(profile, threads))

    def ready(self) -> bool:
        """Answers once the worker is up (its model loaded, or known not to load)."""
        return True

    def render(self, payload: dict) -> RenderResult:
        from omostc.batch.executors import _render

        if self.backend is None:  # not loaded: load_error says why
            return payload["index"], None, 0.0, self.load_error, []
        return _render(self.backend, self.profile, payload["index"], scene_from_dict(payload["scene"]),
                       RenderOptions.from_dict(payload["options"]),
                       Noise(**payload["noise"]) if payload.get("noise") else payload["seed"], payload["key"],
                       payload["model"])
