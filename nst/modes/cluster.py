"""Ray: `nst batch` on many machines (``--cluster ADDRESS``, ``cluster=``).

The driver (the ``nst batch`` process) plans, skips and writes, as it does
locally (`nst.modes.batch`); this module runs the groups of jobs on Ray workers:

- one worker actor per GPU (``num_gpus=1``), or on a cluster without GPUs,
  one per ``worker_cpus`` CPUs of each node (default: one per node, all its
  CPUs). Each keeps its compiled engines (`nst.core.engine`) warm, and is handed
  a group of the shape it ran last where one is waiting;
- inputs travel as bytes (Ray's object store, each file once a batch), so
  workers need no shared disk; so do a weights file and an ``init`` image.
  URLs (http(s), or s3://, gs://, ... with fsspec) travel as addresses, for
  each worker to fetch; 'imagenet' weights are downloaded by each node;
- results come back to the driver, which writes each PNG atomically, so no
  output is written twice or half-written;
- a worker that dies (a pre-empted node, Ray's out-of-memory killer,
  ``kill -9``) is replaced and its group is run again on the next free
  worker, `ATTEMPTS` tries in all; a group that raises fails as it would
  locally;
- Ctrl-C asks every running worker to end its group as a single run ends
  (its best images so far), waits up to `GRACE_S` for them, then stops.

Workers need nst and TensorFlow installed (``pip install 'nst[ray]'`` in
the cluster's image); the driver needs only Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nst.base.config import INITS, Config, ConfigError
from nst.io.images import ADDRESS, SAMPLE_PREFIX, ImageSource, describe, sample_path
from nst.io.jobs import Job
from nst.io.weights import resolve_weights
from nst.run.record import Progress, Result

#: Tries a group gets in all when workers die under it (then its jobs fail).
ATTEMPTS = 3
#: Seconds Ctrl-C waits for the running groups' best images.
GRACE_S = 60.0
#: Seconds between progress reports from the running workers.
POLL_S = 1.0
#: Seconds without a worker, all still waiting for the cluster's resources, before giving up.
START_S = 600.0
INSTALL = "pip install 'nst[ray]'"


class ClusterError(RuntimeError):
    """From a Ray cluster: it cannot run the batch, or a group failed on a
    worker; the message says which and why."""


def require_ray() -> None:
    """Refuse at once, with the pip command, where Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ConfigError(f"running on a Ray cluster needs Ray, which is not installed here: {INSTALL}")


def local_file(source: ImageSource) -> Path | None:
    """The file on this machine that ``source`` names (a path, a sample), or None (a URL, an array)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    text = os.fspath(source)
    if text.startswith(SAMPLE_PREFIX):
        return sample_path(text[len(SAMPLE_PREFIX) :])
    return Path(text) if not ADDRESS.match(text) and Path(text).is_file() else None


def files_of(job: Job, config: Config) -> tuple[dict[str, Path | None], dict[str, str]]:
    """The files ``job`` reads, by their names here (None: it travels as its
    name), and its settings that name one of them (weights, init)."""
    named = {describe(s): local_file(s) for s in job.images()}
    c, by_setting = config.replace(**job.settings), {}
    weights = resolve_weights(c.weights)
    if weights not in ("random", "imagenet"):
        by_setting["weights"], named[weights] = weights, Path(weights)
    if c.init not in INITS and (init := local_file(c.init)) is not None:
        by_setting["init"] = c.init
        named[c.init] = init
    return named, by_setting


@dataclasses.dataclass(frozen=True)
class Parcel:
    """A group as it travels: its jobs named as on the driver, the shared
    settings, each local file (by its name there) as a digest, a file name
    and a reference to its bytes in Ray's object store, and per job index
    the settings that name one of those files."""

    jobs: list[Job]
    config: Config
    files: dict[str, tuple[str, str, Any]]
    settings: dict[int, dict[str, str]]


class Worker:
    """A Ray actor: runs parcels with `nst.stylize_many`, one at a time,
    keeping its engines warm; answers `progress` and `interrupt` meanwhile."""

    def __init__(self, cpus: int | None) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        if cpus:  # a CPU worker uses its share of the node, not every core
            tf.config.threading.set_intra_op_parallelism_threads(cpus)
            tf.config.threading.set_inter_op_parallelism_threads(min(cpus, 2))
        base = Path(tempfile.gettempdir())
        for old in base.glob("nst-worker-*") if Path("/proc/self").exists() else []:  # left by killed workers
            if not Path(f"/proc/{old.name.rsplit('-', 1)[-1]}").exists():
                shutil.rmtree(old, ignore_errors=True)
        self.folder = base / f"nst-worker-{os.getpid()}"
        self.folder.mkdir(exist_ok=True)
        self.latest: tuple | None = None
        self.stopping = False

    def where(self) -> str:
        """The host and process it runs in."""
        return f"{socket.gethostname()} pid {os.getpid()}"

    def run(self, parcel: Parcel) -> list[Result | None]:
        """The group's results, named and set as on the driver. Its own
        error comes back as a `ClusterError` (the driver may lack its type)."""
        import ray

        from nst.run.optimize import stylize_many

        here, back = {}, {}
        for name, (digest, filename, ref) in parcel.files.items():
            path = self.folder / digest[:24] / filename
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(ray.get(ref))
            here[name], back[str(path)] = str(path), name

        def moved(source: Any) -> Any:
            if isinstance(source, (list, tuple)):
                return [moved(s) for s in source]
            return here.get(describe(source), source) if source is not None else None

        jobs = [
            dataclasses.replace(
                job,
                content=moved(job.content),
                style=moved(job.style),
                masks=moved(job.masks),
                style_masks=moved(job.style_masks),
                settings={**job.settings, **{key: here[name] for key, name in parcel.settings.get(i, {}).items()}},
            )
            for i, job in enumerate(parcel.jobs)
        ]
        try:
            results = stylize_many(jobs, config=parcel.config, callback=self.report)
        except Exception as e:
            raise ClusterError(renamed(f"{type(e).__name__}: {e}", back)) from None
        finally:
            self.stopping, self.latest = False, None
        for i, result in enumerate(results):
            if result is not None:
                result.sources = renamed(result.sources, back)
                result.config = result.config.replace(**parcel.settings.get(i, {}))
        return results

    def report(self, progress: Progress) -> None:
        self.latest = progress.fields()
        if self.stopping:
            raise KeyboardInterrupt

    def progress(self) -> tuple | None:
        """The running group's last report (`nst.Progress.fields`)."""
        return self.latest

    def interrupt(self) -> None:
        """End the running group at its next report, as Ctrl-C ends a run."""
        self.stopping = True


def renamed(value: Any, names: dict[str, str]) -> Any:
    """``value`` with each worker path in ``names`` (in strings, lists and dicts) put back as the driver named it."""
    if isinstance(value, str):
        for path, name in names.items():
            value = value.replace(path, name)
        return value
    if isinstance(value, dict):
        return {k: renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, names) for v in value]
    return value


class Cluster:
    """A Ray connection and its workers, for one batch (a context manager)."""

    def __init__(self, address: str, worker_cpus: int | None = None) -> None:
        require_ray()
        token = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
        if (
            address != "local"
            and "RAY_AUTH_MODE" not in os.environ
            and (os.environ.get("RAY_AUTH_TOKEN") or Path(token).is_file())
        ):
            # Where a cluster's token is at hand, use it, as `ray start` does (Ray reads this once, on import).
            os.environ["RAY_AUTH_MODE"] = "token"
        import ray

        self.ray, self.worker_cpus = ray, worker_cpus
        self.started = not ray.is_initialized()
        if self.started:
            handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
            ray.init(
                address=address,
                log_to_driver=False,
                logging_level="ERROR",
                **({"include_dashboard": False} if address == "local" else {}),
            )
            for number, handler in handlers.items():  # keep the command's signal rules (`nst.ui.failure.Signals`)
                if handler is not None:
                    signal.signal(number, handler)
        self.actor = ray.remote(max_concurrency=2)(Worker)
        self.sent: dict[str, tuple[str, str, Any]] = {}
        self.needed: Counter[str] = Counter()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.ray.shutdown()

    def shapes(self) -> list[dict[str, Any]]:
        """The options of each worker to start: one per GPU, else per ``worker_cpus`` CPUs of each node."""
        gpus = int(self.ray.cluster_resources().get("GPU", 0))
        if gpus:
            return [{"num_gpus": 1, "num_cpus": 1}] * gpus
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = []
        for node in self.ray.nodes():
            cpus = int(node["Resources"].get("CPU", 0)) if node["Alive"] else 0
            each = min(self.worker_cpus or cpus, cpus)
            for _ in range(cpus // each if each else 0):
                options.append(
                    {"num_cpus": each, "scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)}
                )
        if not options:
            raise ClusterError("the Ray cluster has no GPU and no CPU for workers (ray status shows its resources)")
        return options

    def parcel(self, jobs: Sequence[Job], config: Config) -> Parcel:
        """``jobs`` ready to travel: each local file's bytes put in the object store once a batch."""
        files, settings = {}, {}
        for i, job in enumerate(jobs):
            named, by_setting = files_of(job, config)
            if by_setting:
                settings[i] = by_setting
            for name, path in named.items():
                if path is not None and name not in self.sent:
                    data = path.read_bytes()
                    self.sent[name] = (hashlib.sha256(data).hexdigest(), path.name, self.ray.put(data))
                if path is not None:
                    files[name] = self.sent[name]
        return Parcel(list(jobs), config, files, settings)

    def release(self, parcel: Parcel) -> None:
        """Let the object store free the bytes no group still to run needs."""
        for name in parcel.files:
            self.needed[name] -= 1
            if self.needed[name] <= 0:
                self.sent.pop(name, None)

    def run(
        self,
        groups: Sequence[tuple[Any, Sequence[Job]]],
        config: Config,
        *,
        on_start: Callable[[int, str, int], Any] | None = None,
        on_progress: Callable[[int, Progress], Any] | None = None,
    ) -> Iterator[tuple[int, list[Result | None] | BaseException]]:
        """Run each (shape, jobs) group on the workers; yield (index, results
        or the group's error) as each ends. ``on_start(index, where, attempt)``
        is called as a group is handed out, ``on_progress(index, progress)``
        about once a second per running group."""
        ray, errors = self.ray, self.ray.exceptions
        for _, jobs in groups:
            self.needed.update({name for job in jobs for name in files_of(job, config)[0]})
        queue, attempts = list(range(len(groups))), [0] * len(groups)
        parcels: dict[int, Parcel] = {}  # made as each group is first handed out, dropped as it ends
        workers, starting, failures = [], {}, []

        def start(opts: dict[str, Any]) -> None:
            worker = self.actor.options(**opts).remote(None if opts.get("num_gpus") else opts["num_cpus"])
            workers.append(worker)
            starting[worker.where.remote()] = (worker, opts)

        for opts in self.shapes():
            start(opts)
        idle: list[tuple[Any, str, dict, Any]] = []  # worker, where, options, the shape it ran last
        busy: dict[Any, tuple[Any, str, dict, int]] = {}
        alone = time.monotonic()  # since when no worker has been up
        try:
            while queue or busy:
                while idle and queue:
                    worker, where, opts, last = idle.pop()
                    index = next((i for i in queue if groups[i][0] == last), queue[0])
                    queue.remove(index)
                    try:
                        parcels[index] = parcels.get(index) or self.parcel(groups[index][1], config)
                    except (OSError, ValueError, RuntimeError) as e:  # an input gone since it was checked
                        idle.append((worker, where, opts, last))
                        yield index, e
                        continue
                    attempts[index] += 1
                    if on_start:
                        on_start(index, where, attempts[index])
                    busy[worker.run.remote(parcels[index])] = (worker, where, opts, index)
                if busy or idle:
                    alone = time.monotonic()
                elif not starting or time.monotonic() - alone > START_S:
                    waited = f"none started in {START_S / 60:.0f} min (ray status shows what the cluster has)"
                    raise ClusterError(
                        f"no Ray worker could run: {failures[-1] if failures else waited}; workers "
                        f"need nst and TensorFlow ({INSTALL} on every node)"
                    )
                ready, _ = ray.wait([*starting, *busy], num_returns=1, timeout=POLL_S)
                if not ready:
                    self._poll(busy, on_progress)
                    continue
                (ref,) = ready
                if ref in starting:
                    worker, opts = starting.pop(ref)
                    try:
                        idle.append((worker, ray.get(ref), opts, None))
                    except errors.RayError as e:
                        failures.append(_cause(e))
                    continue
                worker, where, opts, index = busy[ref]
                try:
                    results = ray.get(ref)
                except errors.RayTaskError as e:  # the group raised: it fails, the worker goes on
                    del busy[ref]
                    idle.append((worker, where, opts, None))
                    self.release(parcels.pop(index))
                    yield index, e.cause if isinstance(e.cause, Exception) else ClusterError(_cause(e))
                    continue
                except errors.RayError as e:  # the worker died: a new one, and the group again
                    del busy[ref]
                    ray.kill(worker)
                    start(opts)
                    if attempts[index] < ATTEMPTS:
                        queue.insert(0, index)
                        continue
                    self.release(parcels.pop(index))
                    yield index, ClusterError(f"its worker died {ATTEMPTS} times (last {where}: {_cause(e)})")
                    continue
                del busy[ref]
                idle.append((worker, where, opts, groups[index][0]))
                self.release(parcels.pop(index))
                yield index, results
        except KeyboardInterrupt:
            for worker, *_ in busy.values():
                worker.interrupt.remote()
            done = ray.wait(list(busy), num_returns=len(busy), timeout=GRACE_S)[0] if busy else []
            for ref in done:
                try:
                    results = ray.get(ref)
                except errors.RayError:
                    continue
                yield busy[ref][3], results
            raise
        finally:
            for worker in workers:
                ray.kill(worker)

    def _poll(self, busy: dict[Any, tuple], on_progress: Callable[[int, Progress], Any] | None) -> None:
        if not (on_progress and busy):
            return
        running = list(busy.values())
        try:
            answers = self.ray.get([worker.progress.remote() for worker, *_ in running])
        except self.ray.exceptions.RayError:  # a worker died: its group's own reference says so
            return
        for (_, where, _, index), fields in zip(running, answers):
            if fields is not None:
                on_progress(index, Progress.reported(fields, f"a Ray worker ({where})"))


def _cause(error: Exception) -> str:
    """The last line of a Ray error's message (where the reason is), without colours."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
