"""The Ray executor: dead workers, a killed driver, a cluster started outside omostc.

The tests that start Ray (about 2 s and 740 MiB each time) are marked slow and bounded by
timeouts; the scheduling of items over workers that die is also tested without Ray, quickly.
Workers that die are test-only subclasses of ``RenderWorker`` given to ``RayExecutor(worker_cls=)``,
which no command-line input reaches.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO

from omostc import load_spec
from omostc.batch.executors import LocalExecutor, make_backend
from omostc.batch.profile import load_profile
from omostc.batch.runner import MANIFEST, plan_items, run_batch

SPECS = sorted((REPO / "specs").glob("*.yaml"))
SIZE = {"width": 128, "height": 128}
CLI = [sys.executable, "-c", "from omostc.cli import main; main()"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
ENV.pop("RAY_ADDRESS", None)
CLUSTER_ENV = {**ENV, "RAY_AUTH_MODE": "disabled"}  # `ray start` turns token authentication on by default


def pngs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.png"))}


def local_pngs(items, out: Path) -> dict[str, bytes]:
    profile = items[0].profile
    run_batch(items, LocalExecutor(lambda: make_backend(profile, 1), profile=profile), out, model_name="preview")
    return pngs(out)


def proc_start(pid: int) -> str | None:
    """The start time of a process (to tell it from a later one with the same pid), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid``, with its start time."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        start = proc_start(child)
        if start is not None and child not in found:
            found[child] = start
            todo += parents.get(child, [])
    return found


def alive(processes: dict[int, str]) -> dict[int, str]:
    return {pid: start for pid, start in processes.items() if proc_start(pid) == start}


def kill_all(processes: dict[int, str]) -> None:
    for pid in alive(processes):
        os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is a dev dependency")
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


@pytest.fixture(scope="class")
def ray_instance():
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", num_cpus=2)
    yield
    ray.shutdown()


@pytest.mark.usefixtures("ray_instance")
@pytest.mark.slow
@needs_ray
class TestDeadWorkers:
    """Workers whose processes die: their items go to live workers, each item has its own bounded
    retries, and a batch whose workers all died ends with every item failed, not a hang."""

    def test_a_worker_that_died_once_is_restarted_and_its_item_rendered(self, tmp_path):
        from omostc.batch.ray_executor import RayExecutor, RenderWorker

        marker = tmp_path / "crashed"

        class CrashOnce(RenderWorker):  # dies, process and all, on its first item; Ray restarts it
            def render(self, payload):
                if not marker.exists():
                    marker.write_text("x")
                    os._exit(1)
                return super().render(payload)

        profile = load_profile("preview")
        items = plan_items([(str(s), load_spec(s)) for s in SPECS[:3]], profile, SIZE)
        results = run_batch(items, RayExecutor(profile, workers=1, threads=1, worker_cls=CrashOnce), tmp_path / "ray",
                            model_name="preview")
        assert marker.exists() and [r.status for r in results] == ["rendered"] * 3, [r.error for r in results]
        assert pngs(tmp_path / "ray") == local_pngs(items, tmp_path / "local")

    def test_a_worker_dead_for_good_leaves_its_items_to_the_live_one(self, tmp_path):
        from omostc.batch.ray_executor import RayExecutor, RenderWorker

        claim, deaths = tmp_path / "doomed", tmp_path / "deaths"

        class OneWorkerAlwaysDies(RenderWorker):
            """The first of the actors to start dies on every item it is given, after each of
            Ray's restarts too, until Ray gives it up; the other renders once that happened
            (or a minute passed), so the dead one is offered items all along."""

            def __init__(self, profile, threads):
                import ray

                super().__init__(profile, threads)
                me = ray.get_runtime_context().get_actor_id()
                mine = claim.with_name(f"claim-{me}-{os.getpid()}")
                mine.write_text(me)
                try:
                    os.link(mine, claim)  # atomic: one actor wins
                except FileExistsError:
                    pass
                self.doomed = claim.read_text() == me

            def render(self, payload):
                if self.doomed:
                    with deaths.open("a") as f:
                        f.write(f"{payload['index']}\n")
                    os._exit(1)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and len(deaths.read_text().split() if deaths.exists() else []) < 3:
                    time.sleep(0.1)
                return super().render(payload)

        profile = load_profile("preview")
        items = plan_items([(str(s), load_spec(s)) for s in SPECS[:4]], profile, SIZE, images=2)
        started = time.monotonic()
        results = run_batch(items, RayExecutor(profile, workers=2, threads=1, worker_cls=OneWorkerAlwaysDies),
                            tmp_path / "ray", model_name="preview")
        assert time.monotonic() - started < 120
        assert [r.status for r in results] == ["rendered"] * 8, [r.error for r in results]
        assert len(deaths.read_text().split()) == 3  # the doomed worker's three lives (two restarts)
        assert pngs(tmp_path / "ray") == local_pngs(items, tmp_path / "local")
        assert len(pngs(tmp_path / "ray")) == 8

    def test_an_item_that_kills_every_worker_fails_alone_after_its_retries(self, tmp_path):
        from omostc.batch.ray_executor import MAX_ATTEMPTS, RayExecutor, RenderWorker

        deaths = tmp_path / "deaths"

        class PoisonedByOneItem(RenderWorker):
            def render(self, payload):
                if payload["index"] == 1:
                    with deaths.open("a") as f:
                        f.write("x\n")
                    os._exit(1)
                return super().render(payload)

        profile = load_profile("preview")
        items = plan_items([(str(s), load_spec(s)) for s in SPECS[:3]], profile, SIZE, images=2)
        results = run_batch(items, RayExecutor(profile, workers=2, threads=1, worker_cls=PoisonedByOneItem),
                            tmp_path / "ray", model_name="preview")
        statuses = [r.status for r in results]
        assert sorted(statuses) == ["failed"] + ["rendered"] * 5, [r.error for r in results]
        failed = results[statuses.index("failed")]
        assert failed.error.startswith(f"not rendered: the Ray worker rendering it died {MAX_ATTEMPTS} times")
        assert len(deaths.read_text().split()) == MAX_ATTEMPTS
        assert len(pngs(tmp_path / "ray")) == 5

    @pytest.mark.parametrize("workers", [1, 2])
    def test_when_every_worker_died_the_rest_fail_with_the_reason(self, tmp_path, workers):
        from omostc.batch.ray_executor import RayExecutor, RenderWorker

        class AlwaysCrash(RenderWorker):
            def render(self, payload):
                os._exit(1)

        preview = load_profile("preview")
        items = plan_items([(str(s), load_spec(s)) for s in SPECS[:3]], preview, SIZE, images=2)
        started = time.monotonic()
        results = run_batch(items, RayExecutor(preview, workers=workers, threads=1, worker_cls=AlwaysCrash),
                            tmp_path, model_name="preview")
        assert time.monotonic() - started < 120
        assert [r.status for r in results] == ["failed"] * 6
        errors = [r.error for r in results]
        assert any(e.startswith("not rendered: the Ray worker rendering it died") for e in errors), errors
        assert any(e.startswith(f"not rendered: every Ray worker ({workers}) died") for e in errors), errors
        assert len((tmp_path / MANIFEST).read_text().splitlines()) == 6

    def test_workers_the_cluster_has_no_room_for_are_not_waited_for(self, tmp_path):
        from omostc.batch.ray_executor import RayExecutor

        profile = load_profile("preview")
        items = plan_items([(str(s), load_spec(s)) for s in SPECS[:2]], profile, SIZE, images=2)
        results = run_batch(items, RayExecutor(profile, workers=3, threads=1), tmp_path / "three", model_name="p")
        assert [r.status for r in results] == ["rendered"] * 4, [r.error for r in results]  # 2 CPUs: 2 workers
        results = run_batch(items, RayExecutor(profile, workers=1, threads=3), tmp_path / "wide", model_name="p")
        assert [r.error for r in results] == ["a Ray worker needs 3 CPUs (--threads) and the cluster has 2"] * 4

    def test_a_model_that_will_not_load_fails_every_item_with_the_reason(self, tmp_path):
        from omostc.batch.api import prepare_profile
        from omostc.batch.ray_executor import RayExecutor

        items = plan_items([(str(s), load_spec(s)) for s in SPECS[:2]], load_profile("preview"), SIZE)
        missing = prepare_profile("tiny", model=str(tmp_path / "no-model"), backend_options={"device": "cpu"})
        results = run_batch(items, RayExecutor(missing, workers=1, threads=1), tmp_path / "a", model_name="x")
        assert [r.status for r in results] == ["failed"] * 2
        assert all(r.error.startswith("ModelError: cannot load SDXL from") for r in results)


@needs_proc
@pytest.mark.slow
@needs_ray
def test_a_killed_driver_leaves_no_process_of_its_ray_instance(tmp_path):
    out = tmp_path / "out"
    driver = subprocess.Popen([*CLI, "render", str(SPECS[0]), "--images", "1000", "-o", str(out), "-q",
                               "--executor", "ray", "--workers", "1", "--threads", "1"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    processes: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/*.png")):  # mid-batch: rendering has begun
            assert driver.poll() is None, driver.stderr.read().decode() if driver.stderr else ""
            assert time.monotonic() < deadline, "no PNG within 120 s"
            time.sleep(0.1)
        processes = descendants(driver.pid)
        assert any("raylet" in cmdline(p) for p in processes), [cmdline(p) for p in processes]
        driver.kill()
        driver.wait(timeout=30)
        assert len(list(out.glob("*/*.png"))) < 1000  # killed mid-batch
        deadline = time.monotonic() + 30
        while alive(processes) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = alive(processes)
        assert not left, [cmdline(p) for p in left]
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_all(processes)


@needs_proc
@pytest.mark.slow
@needs_ray
def test_worker_processes_killed_mid_batch_cost_no_item(tmp_path):
    """``kill -9`` of a worker process, three times: Ray restarts it or the other worker goes on;
    every item renders, as a local run renders it."""
    common = ["render", str(SPECS[0]), "--images", "120", "--width", "512", "--height", "512", "-q"]
    out = tmp_path / "ray"
    driver = subprocess.Popen([*CLI, *common, "-o", str(out), "--executor", "ray", "--workers", "2", "--threads", "1"],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    processes: dict[int, str] = {}
    kills = []
    try:
        deadline = time.monotonic() + 240
        while driver.poll() is None and len(kills) < 3 and time.monotonic() < deadline:
            done = len(list(out.glob("*/*.png")))
            workers = sorted(p for p in descendants(driver.pid) if "RenderWorker" in cmdline(p))
            if done >= 10 * (len(kills) + 1) and workers:
                os.kill(workers[0], signal.SIGKILL)
                kills.append(done)
            time.sleep(0.1)
        processes = descendants(driver.pid)
        _, err = driver.communicate(timeout=240)
    finally:
        if driver.poll() is None:
            driver.kill()
        kill_all(processes)
    assert len(kills) == 3 and driver.returncode == 0, err
    assert "120 rendered, 0 already rendered, 0 failed" in err
    local = subprocess.run([*CLI, *common, "-o", str(tmp_path / "local")], env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr
    assert pngs(out) == pngs(tmp_path / "local")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_ray
def test_an_address_where_no_cluster_answers_fails_the_items_at_once(tmp_path):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    res = subprocess.run([*CLI, "render", str(SPECS[0]), "--images", "2", "-o", str(tmp_path), "--executor", "ray",
                          "--ray-address", f"127.0.0.1:{port}"], env=ENV, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert f"error: cannot connect to the Ray cluster at 127.0.0.1:{port}: nothing answers" in res.stderr
    assert "0 rendered, 0 already rendered, 2 failed" in res.stderr


@pytest.fixture
def outside_cluster():
    """A Ray head started with ``ray start`` on loopback, in a temporary folder; stopped (it and
    every process it started) at the end, without touching any other Ray instance."""
    temp = Path(tempfile.mkdtemp(prefix="omostc-ray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    port = free_port()
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                             "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--temp-dir", str(temp), "--disable-usage-stats"],
                            env=CLUSTER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 90
        probe = [sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{port}', logging_level='ERROR'); "
                 "print(ray.cluster_resources().get('CPU'))"]
        while True:
            assert head.poll() is None, "ray start --head failed"
            assert time.monotonic() < deadline, "the Ray head did not start within 90 s"
            ok = subprocess.run(probe, env=CLUSTER_ENV, capture_output=True, text=True, timeout=60)
            if ok.returncode == 0 and ok.stdout.strip() == "2.0":
                break
            time.sleep(1)
        processes = descendants(head.pid)
        yield f"127.0.0.1:{port}", head, processes
    finally:
        processes.update(descendants(head.pid))
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        time.sleep(1)
        kill_all(processes)
        shutil.rmtree(temp, ignore_errors=True)


@needs_proc
@pytest.mark.slow
@needs_ray
def test_a_cluster_started_outside_omostc_renders_the_local_pngs_and_stays_up(tmp_path, outside_cluster):
    address, head, processes = outside_cluster
    common = ["render", *map(str, SPECS[:3]), "--images", "2", "--width", "128", "--height", "128", "-q"]
    local = subprocess.run([*CLI, *common, "-o", str(tmp_path / "local")], env=ENV, capture_output=True, text=True,
                           timeout=300)
    assert local.returncode == 0, local.stderr
    remote = subprocess.run([*CLI, *common, "-o", str(tmp_path / "ray"), "--executor", "ray", "--workers", "2",
                             "--threads", "1", "--ray-address", address, "--log", "json"],
                            env=CLUSTER_ENV, capture_output=True, text=True, timeout=300)
    assert remote.returncode == 0, remote.stderr
    assert len(pngs(tmp_path / "ray")) == 6 and pngs(tmp_path / "ray") == pngs(tmp_path / "local")
    rows = [json.loads(line) for line in (tmp_path / "ray" / MANIFEST).read_text().splitlines()]
    assert [r["status"] for r in rows] == ["rendered"] * 6
    # omostc did not shut down a cluster it did not start: its processes live and it takes a new driver
    assert head.poll() is None
    core = {pid: start for pid, start in processes.items() if "gcs_server" in cmdline(pid) or "raylet" in cmdline(pid)}
    assert len(core) >= 2 and alive(core) == core
    again = subprocess.run([*CLI, *common, "-o", str(tmp_path / "ray"), "--executor", "ray", "--ray-address", address,
                            "--threads", "1", "--force"], env=CLUSTER_ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "6 rendered, 0 already rendered" in again.stderr, again.stderr
    assert pngs(tmp_path / "ray") == pngs(tmp_path / "local") and head.poll() is None


class FakeRay:
    """Just enough of Ray for ``_stream``: actors whose tasks finish in the order they were sent."""

    class exceptions:  # noqa: N801 - named as Ray's module
        class RayError(Exception):
            pass

        class RayActorError(RayError):
            pass

        class ActorDiedError(RayActorError):
            pass

        class ActorUnavailableError(RayActorError):
            pass

    def __init__(self):
        self.sent: list = []

    class Ref:
        def __init__(self, order: int, value):
            self.order, self.value = order, value

    @staticmethod
    def wait(refs, num_returns=1):
        return [min(refs, key=lambda r: r.order)], []

    @staticmethod
    def get(ref):
        if isinstance(ref.value, Exception):
            raise ref.value
        return ref.value


class FakeActor:
    """Lives ``lives`` processes (Ray's restarts); dies on the items ``dies_on`` says."""

    def __init__(self, fake: FakeRay, name: int, dies_on, lives: int = 3):
        self.fake, self.name, self.dies_on, self.lives = fake, name, dies_on, lives
        self.rendered: list[int] = []
        self.sent_when_dead = 0
        actor = self

        class Method:
            def __init__(self, call):
                self.call = call

            def remote(self, *args):
                ref = FakeRay.Ref(len(actor.fake.sent), self.call(*args))
                actor.fake.sent.append(ref)
                return ref

        self.ready = Method(self._ready)
        self.render = Method(self._render)

    def _ready(self):
        return True if self.lives > 0 else FakeRay.exceptions.ActorDiedError("The actor died")

    def _render(self, payload):
        if self.lives <= 0:
            self.sent_when_dead += 1
            return FakeRay.exceptions.ActorDiedError("The actor is dead")
        if self.dies_on(payload["index"]):
            self.lives -= 1
            return FakeRay.exceptions.ActorDiedError("The actor died unexpectedly before finishing this task.")
        self.rendered.append(payload["index"])
        return payload["index"], b"png", 0.0, None, []


def stream(actors, items: int, fake: FakeRay):
    from omostc.batch.ray_executor import _stream

    return {r[0]: r[3] for r in _stream(fake, actors, [{"index": i} for i in range(items)])}


@pytest.mark.parametrize("items", [1, 2, 8, 30])
def test_scheduling_a_worker_dead_for_good_gets_nothing_more_and_its_items_are_rendered(items):
    fake = FakeRay()
    doomed, healthy = FakeActor(fake, 0, lambda i: True), FakeActor(fake, 1, lambda i: False)
    results = stream([doomed, healthy], items, fake)
    assert results == dict.fromkeys(range(items))
    assert sorted(healthy.rendered) == list(range(items))  # each once, the doomed worker's included
    assert doomed.sent_when_dead == 0 and doomed.rendered == []
    assert doomed.lives == (0 if items >= 8 else doomed.lives)  # in a long batch it used up its restarts


def test_scheduling_an_item_that_kills_every_worker_fails_alone():
    from omostc.batch.ray_executor import MAX_ATTEMPTS

    fake = FakeRay()
    actors = [FakeActor(fake, n, lambda i: i == 2) for n in range(2)]
    results = stream(actors, 6, fake)
    assert [i for i, e in results.items() if e] == [2] and len(results) == 6
    assert results[2].startswith(f"not rendered: the Ray worker rendering it died {MAX_ATTEMPTS} times")
    assert sum(3 - a.lives for a in actors) == MAX_ATTEMPTS


@pytest.mark.parametrize("workers", [1, 3])
def test_scheduling_ends_when_every_worker_is_gone(workers):
    fake = FakeRay()
    actors = [FakeActor(fake, n, lambda i: True) for n in range(workers)]
    results = stream(actors, 10, fake)
    assert len(results) == 10 and all(e.startswith("not rendered: ") for e in results.values())
    assert any(e.startswith(f"not rendered: every Ray worker ({workers}) died") for e in results.values())
    assert all(a.lives == 0 and a.sent_when_dead == 0 for a in actors)
