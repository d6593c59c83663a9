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
from nst.io.images import ADDRESS, SAMPLE_PREFIX, ImageSource, sample_path, source_name
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
    named = {source_name(s): local_file(s) for s in job.images()}
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
            return here.get(source_name(source), source) if source is not None else None

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
    ) -> Dispatch:
        """Run each (shape, jobs) group on the workers: a `Dispatch` to
        iterate, which yields (index, results or the group's error) as each
        group ends. ``on_start(index, where, attempt)`` is called as a group
        is handed out, ``on_progress(index, progress)`` about once a second
        per running group."""
        for _, jobs in groups:
            self.needed.update({name for job in jobs for name in files_of(job, config)[0]})
        return Dispatch(self, groups, config, on_start, on_progress)


@dataclasses.dataclass
class Seat:
    """A worker actor of the batch: where it runs, the options it was
    started with (to start another like it), the shape of the group it ran
    last (None: none yet, or its last one failed) and the group it runs now."""

    worker: Any
    where: str
    options: dict[str, Any]
    last: Any = None
    group: int | None = None


class Dispatch:
    """The groups of one batch handed out to the cluster's workers: which
    are waiting (``queue``), how often each was tried, which workers are
    starting, idle or busy. Iterate it for each group's outcome as it ends;
    `interrupt` (or Ctrl-C in it) ends the running groups as runs end."""

    def __init__(
        self,
        cluster: Cluster,
        groups: Sequence[tuple[Any, Sequence[Job]]],
        config: Config,
        on_start: Callable[[int, str, int], Any] | None,
        on_progress: Callable[[int, Progress], Any] | None,
    ) -> None:
        self.cluster, self.ray, self.groups, self.config = cluster, cluster.ray, groups, config
        self.on_start, self.on_progress = on_start, on_progress
        self.queue = list(range(len(groups)))
        self.attempts = [0] * len(groups)
        self.parcels: dict[int, Parcel] = {}  # made as each group is first handed out, dropped as it ends
        self.workers: list[Any] = []
        self.starting: dict[Any, tuple[Any, dict[str, Any]]] = {}  # where() reference -> worker, options
        self.idle: list[Seat] = []
        self.busy: dict[Any, Seat] = {}  # run() reference -> its seat
        self.failures: list[str] = []  # why workers could not start
        self.interrupted = False

    def interrupt(self) -> None:
        """Ctrl-C came while an outcome was written: the running groups end
        as runs end (their best images come next), then KeyboardInterrupt."""
        self.interrupted = True

    def close(self) -> None:
        """End every worker of the batch (once)."""
        workers, self.workers = self.workers, []
        for worker in workers:
            self.ray.kill(worker)

    def __iter__(self) -> Iterator[tuple[int, list[Result | None] | BaseException]]:
        for options in self.cluster.shapes():
            self._start(options)
        alone = time.monotonic()  # since when no worker has been up
        try:
            while self.queue or self.busy:
                if self.interrupted:
                    raise KeyboardInterrupt
                yield from self._hand_out()
                if self.busy or self.idle:
                    alone = time.monotonic()
                elif not self.starting or time.monotonic() - alone > START_S:
                    waited = f"none started in {START_S / 60:.0f} min (ray status shows what the cluster has)"
                    raise ClusterError(
                        f"no Ray worker could run: {self.failures[-1] if self.failures else waited}; workers "
                        f"need nst and TensorFlow ({INSTALL} on every node)"
                    )
                ready, _ = self.ray.wait([*self.starting, *self.busy], num_returns=1, timeout=POLL_S)
                if not ready:
                    self._poll()
                elif ready[0] in self.starting:
                    self._started(ready[0])
                else:
                    yield from self._ended(ready[0])
            if self.interrupted:  # after the last group's outcomes were written
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            yield from self._grace()
            raise
        finally:
            self.close()

    def _start(self, options: dict[str, Any]) -> None:
        worker = self.cluster.actor.options(**options).remote(None if options.get("num_gpus") else options["num_cpus"])
        self.workers.append(worker)
        self.starting[worker.where.remote()] = (worker, options)

    def _started(self, ref: Any) -> None:
        worker, options = self.starting.pop(ref)
        try:
            self.idle.append(Seat(worker, self.ray.get(ref), options))
        except self.ray.exceptions.RayError as e:
            self.failures.append(_cause(e))

    def _hand_out(self) -> Iterator[tuple[int, BaseException]]:
        """Each idle worker gets a waiting group, of the shape it ran last where one waits."""
        while self.idle and self.queue and not self.interrupted:
            seat = self.idle.pop()
            index = next((i for i in self.queue if self.groups[i][0] == seat.last), self.queue[0])
            self.queue.remove(index)
            try:
                self.parcels[index] = self.parcels.get(index) or self.cluster.parcel(self.groups[index][1], self.config)
            except (OSError, ValueError, RuntimeError) as e:  # an input gone since it was checked
                self.idle.append(seat)
                yield index, e
                continue
            self.attempts[index] += 1
            if self.on_start:
                self.on_start(index, seat.where, self.attempts[index])
            seat.group = index
            self.busy[seat.worker.run.remote(self.parcels[index])] = seat

    def _ended(self, ref: Any) -> Iterator[tuple[int, list[Result | None] | BaseException]]:
        """A group's run ended: its results, its error, or its worker's death
        (then it is tried again). The seat stays busy until its results are
        in hand, so a Ctrl-C meanwhile leaves them to the grace."""
        errors, seat = self.ray.exceptions, self.busy[ref]
        index = seat.group
        try:
            results = self.ray.get(ref)
        except errors.RayTaskError as e:  # the group raised: it fails, the worker goes on
            self._free(ref, last=None)
            yield index, e.cause if isinstance(e.cause, Exception) else ClusterError(_cause(e))
            return
        except errors.RayError as e:  # the worker died: a new one, and the group again
            del self.busy[ref]
            self.ray.kill(seat.worker)
            self._start(seat.options)
            if self.attempts[index] < ATTEMPTS:
                self.queue.insert(0, index)
                return
            self.cluster.release(self.parcels.pop(index))
            yield index, ClusterError(f"its worker died {ATTEMPTS} times (last {seat.where}: {_cause(e)})")
            return
        self._free(ref, last=self.groups[index][0])
        yield index, results

    def _free(self, ref: Any, last: Any) -> None:
        """The seat of ``ref`` is idle again, having run a group of shape ``last``; its parcel goes."""
        seat = self.busy.pop(ref)
        self.cluster.release(self.parcels.pop(seat.group))
        seat.group, seat.last = None, last
        self.idle.append(seat)

    def _grace(self) -> Iterator[tuple[int, list[Result | None]]]:
        """Ctrl-C: each running group is asked to end now; the best images of
        those that end within `GRACE_S` come back."""
        for seat in self.busy.values():
            seat.worker.interrupt.remote()
        done = self.ray.wait(list(self.busy), num_returns=len(self.busy), timeout=GRACE_S)[0] if self.busy else []
        for ref in done:
            try:
                results = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue
            yield self.busy[ref].group, results

    def _poll(self) -> None:
        """Each running group's last progress, to ``on_progress``."""
        if not (self.on_progress and self.busy):
            return
        running = list(self.busy.values())
        try:
            answers = self.ray.get([seat.worker.progress.remote() for seat in running])
        except self.ray.exceptions.RayError:  # a worker died: its group's own reference says so
            return
        for seat, fields in zip(running, answers):
            if fields is not None:
                self.on_progress(seat.group, Progress.reported(fields, f"a Ray worker ({seat.where})"))


def _cause(error: Exception) -> str:
    """The last line of a Ray error's message (where the reason is), without colours."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
