"""Many pictures: one run per content x style x sweep value, written into a
folder, resumable, grouped so that each group of one output shape reuses
one compiled engine (`nst.core.engine`) as one `nst.stylize_many` batch.

    jobs = nst.grid(["a.jpg", "b.jpg"], ["sample:starry_night"], style_weight=[1e3, 1e4])
    report = nst.batch(jobs, "out/", size=256)   # out/a--starry_night--style-weight-1000.png, ...

Each output is ``OUT/<content>--<style>[--<option>-<value>...].png`` (a
blend's styles joined by ``+``), with its usual record plus the job's key:
a SHA-256 of its inputs' bytes and its settings. ``OUT/batch.jsonl`` lists
every job and its status (pending, done, failed and why), rewritten whole
as each job ends. Running the same jobs again skips every one whose PNG
holds the same key and finished, and does so without loading TensorFlow
when nothing is left (`plan` and `pending` read only files and PNG text).

With ``cluster=`` (``nst batch --cluster``) the same groups run on a Ray
cluster's workers (`nst.modes.cluster`); planning, skipping and writing stay here.

A job that fails (an unreadable photo, a loss that is no longer finite, a
group that runs out of memory) is recorded and the others go on. Ctrl-C
ends the running group as a single run ends (each image's best so far is
written, marked interrupted, and stays pending), keeps every finished
output, and stops.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nst.base.config import Config
from nst.io.images import ImageError, ImageSource, load_image, open_image, read_metadata, write_atomic
from nst.io.jobs import Job, config_for, listed
from nst.io.weights import WeightsError
from nst.modes.cluster import Cluster, ClusterError, require_ray
from nst.run.preflight import preflight
from nst.run.record import TIME_LIMIT

#: At most this many images run as one batch: on a CPU a larger batch
#: saves nothing more (BENCHMARKS.md, "Numbers behind the code's choices"), and on a GPU it bounds the memory a group needs.
GROUP = 4
LOG = "batch.jsonl"


@dataclass(frozen=True)
class Planned:
    """A job with where it goes: its name (the output's stem), its output
    PNG, its key (inputs' bytes and settings hashed) and its output shape
    (None where the content cannot be read: the job fails when its group starts)."""

    job: Job
    name: str
    output: Path
    key: str
    shape: tuple[int, int] | None


@dataclass
class BatchReport:
    """What `batch` did: the `nst.Result` of each job that ran now (by
    name), the jobs skipped as already done, and each failure's reason."""

    results: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    log: Path | None = None


def stem(source: ImageSource) -> str:
    """An input's name in an output's: its file name without the extension."""
    text = str(source).rstrip("/").split("/")[-1].removeprefix("sample:")
    return text.rsplit(".", 1)[0] if "." in text else text


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(map(_value, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def name_of(job: Job) -> str:
    """``<content>--<style>[--<option>-<value>...]``: a blend's styles joined by ``+``."""
    parts = [stem(job.content), "+".join(stem(s) for s in listed(job.style))]
    parts += [f"{key.replace('_', '-')}-{_value(value)}" for key, value in job.settings.items()]
    return "--".join(parts)


def _digest(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
        stat = Path(source).stat()
        return _file_digest(str(Path(source).resolve()), stat.st_mtime_ns, stat.st_size)
    return str(source)  # a URL or a sample: its name is what it is


@functools.lru_cache(maxsize=4096)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    """A file's SHA-256, read once per version of it (a style shared by a
    thousand jobs is hashed once; a file that changes is hashed again)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def key_of(job: Job, config: Config) -> str:
    """The SHA-256 of the job's inputs (file bytes, else names) and its whole settings."""
    inputs = [_digest(s) for s in job.images()]
    text = json.dumps({"inputs": inputs, "settings": config.to_dict()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _shape(source: ImageSource, size: int) -> tuple[int, int] | None:
    """The output's (height, width) for ``source`` at ``size`` (longest side),
    from its header where it is a file; None where it cannot be read."""
    try:
        if isinstance(source, (str, os.PathLike)) and Path(source).is_file():
            with open_image(source) as im:
                width, height = im.size
        else:
            height, width = load_image(source).shape[:2]
    except (ImageError, OSError, ValueError):
        return None
    scale = size / max(height, width)
    return max(round(height * scale), 1), max(round(width * scale), 1)


def plan(
    jobs: Sequence[Job], out_dir: str | os.PathLike, config: Config | None = None, **overrides: Any
) -> list[Planned]:
    """Each job's name, output, key and shape (no TensorFlow). Two jobs
    that would write the same file are an error, said before anything runs."""
    out = Path(out_dir)
    base = config_for(config, dict(overrides))
    planned, seen = [], {}
    for job in jobs:
        job_config = base.replace(**job.settings)
        name = name_of(job)
        if name in seen:
            raise ImageError(
                f"{out / name}.png: two jobs would write it ({seen[name]} and {job.content}); "
                "give inputs different file names"
            )
        seen[name] = job.content
        planned.append(
            Planned(job, name, out / f"{name}.png", key_of(job, job_config), _shape(job.content, job_config.size))
        )
    return planned


def finished(item: Planned) -> bool:
    """Whether ``item``'s PNG exists, holds its key and ran to its end."""
    if not item.output.is_file():
        return False
    try:
        meta = read_metadata(item.output)
    except (ImageError, OSError, ValueError):
        return False
    stopped = meta.get("stopped")
    return meta.get("batch", {}).get("key") == item.key and (stopped is None or stopped.startswith(TIME_LIMIT))


def pending(planned: Sequence[Planned]) -> list[Planned]:
    """The planned jobs not yet done (see `finished`)."""
    return [item for item in planned if not finished(item)]


class Log:
    """``batch.jsonl``: one line per job (name, output, inputs, settings,
    status, reason, where it ran, attempts), rewritten whole at each change."""

    def __init__(self, out: Path, planned: Sequence[Planned], done: set[str]) -> None:
        self.path = out / LOG
        self.rows = {
            p.name: {
                "name": p.name,
                "output": str(p.output),
                "content": str(p.job.content),
                "style": [str(s) for s in listed(p.job.style)],
                "settings": dict(p.job.settings),
                "status": "done" if p.name in done else "pending",
                "reason": None,
                "worker": None,
                "attempts": 0,
            }
            for p in planned
        }
        self.write()

    def set(self, name: str, status: str, reason: str | None = None, **more: Any) -> None:
        self.rows[name].update(status=status, reason=reason, **more)
        self.write()

    def write(self) -> None:
        text = "".join(json.dumps(row, default=str) + "\n" for row in self.rows.values())
        write_atomic(self.path, text.encode())


def groups(planned: Sequence[Planned], size: int = GROUP) -> list[list[Planned]]:
    """The jobs by output shape (each shape's engine compiled once), at most ``size`` to a group."""
    by_shape: dict[tuple[int, int] | None, list[Planned]] = {}
    for item in planned:
        by_shape.setdefault(item.shape, []).append(item)
    return [items[i : i + size] for items in by_shape.values() for i in range(0, len(items), size)]


def clear_temporaries(out: Path) -> None:
    """Remove what a killed batch left half-written (``write_atomic``'s
    temporary files of processes no longer running)."""
    for tmp in out.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 3)[-3]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and Path("/proc/self").exists():
            tmp.unlink(missing_ok=True)


class Here:
    """The groups run one after another in this process. Iterate it for
    (index, results or the group's error) as each ends; after a group that
    was interrupted, or after `interrupt`, KeyboardInterrupt goes on."""

    def __init__(
        self,
        ready: Sequence[Sequence[Planned]],
        config: Config,
        callback: Callable[[int, Any], Any] | None,
        every: int,
        on_start: Callable[[int, str, int], Any],
    ) -> None:
        self.ready, self.config, self.callback, self.every, self.on_start = ready, config, callback, every, on_start
        self.interrupted = False

    def interrupt(self) -> None:
        """Ctrl-C came while an outcome was written: no group starts after it."""
        self.interrupted = True

    def close(self) -> None:
        """Nothing runs between two groups: nothing to end."""

    def __iter__(self) -> Iterator[tuple[int, list | BaseException]]:
        from nst.run.optimize import stylize_many  # TensorFlow loads here, once there is work to do

        for index, items in enumerate(self.ready):
            if self.interrupted:
                raise KeyboardInterrupt
            self.on_start(index, f"{socket.gethostname()} pid {os.getpid()}", 1)
            named = self.callback and functools.partial(self.callback, index)
            try:
                jobs = [p.job for p in items]
                results = stylize_many(jobs, config=self.config, callback=named, callback_every=self.every)
            except Exception as e:  # the group's (out of memory, TensorFlow's errors): its jobs fail, the rest go on
                yield index, e
                continue
            yield index, results
            if any(r is None or r.stopped == "interrupted" for r in results):
                raise KeyboardInterrupt
        if self.interrupted:  # after the last group's outcomes were written
            raise KeyboardInterrupt


def batch(
    jobs: Sequence[Job],
    out_dir: str | os.PathLike,
    *,
    config: Config | None = None,
    cluster: str | None = None,
    worker_cpus: int | None = None,
    callback: Callable[[str, Any], Any] | None = None,
    callback_every: int = 1,
    on_job: Callable[[str, str], Any] | None = None,
    **overrides: Any,
) -> BatchReport:
    """Run ``jobs`` into ``out_dir``, skipping those already done (see the module).

    Args:
        jobs: the runs, e.g. from `nst.grid`; a job's settings override the shared ones.
        out_dir: the folder for the PNGs and ``batch.jsonl`` (made if missing).
        config: the shared settings (default: the 'report' preset).
        cluster: None runs here; else a Ray address (see `nst.modes.cluster`):
            'auto' (the cluster this machine is part of), 'local' (start Ray
            on this machine now: a worker per GPU), 'HOST:PORT' or
            'ray://HOST:10001'. Where Ray is already connected, that connection.
        worker_cpus: on a cluster without GPUs, the CPUs of each worker
            (default: all of a node's).
        callback: called as ``callback(name, progress)`` with each job's
            `nst.Progress`, every ``callback_every`` steps (see `nst.stylize`;
            on a cluster, about once a second, without ``progress.image()``).
        on_job: called as ``on_job(name, status)`` when a job is 'done',
            'failed', or 'interrupted' (its best image so far written).
        **overrides: shared `Config` fields, as for `nst.stylize`.

    Returns:
        A `BatchReport`: results by job name, the names skipped, the failures.
        Ctrl-C raises KeyboardInterrupt once the finished outputs are written.
    """
    if cluster is not None:
        require_ray()
    base = config_for(config, dict(overrides))
    return Batch(plan(jobs, out_dir, base), Path(out_dir), base, on_job, here=cluster is None).run(
        cluster, worker_cpus, callback, callback_every
    )


class Batch:
    """One batch into its folder: the jobs planned, the report and the log
    kept as each job ends, the groups ready to run."""

    def __init__(
        self,
        planned: list[Planned],
        out: Path,
        config: Config,
        on_job: Callable[[str, str], Any] | None,
        *,
        here: bool = True,
    ) -> None:
        """The planned jobs, into ``out``: those done skipped, the rest checked
        (``here``: the runs are on this machine, so its memory counts)."""
        todo = pending(planned)
        clear_temporaries(out)
        self.config, self.on_job = config, on_job
        self.report = BatchReport(skipped=[p.name for p in planned if p not in todo])
        self.log = Log(out, planned, set(self.report.skipped))
        self.report.log = self.log.path
        runnable = []
        for item in todo:  # what a single run checks before it starts, before TensorFlow loads
            try:
                preflight(item.job, config, memory=here)
                runnable.append(item)
            except (ImageError, WeightsError, MemoryError, OSError, ValueError) as e:
                self.ended(item, "failed", str(e))
        self.ready = groups(runnable)
        """The groups to run, by shape."""

    def run(
        self,
        cluster: str | None,
        worker_cpus: int | None,
        callback: Callable[[str, Any], Any] | None,
        every: int,
    ) -> BatchReport:
        """Run the groups, here or on ``cluster``, and keep each outcome as it comes."""
        if not self.ready:
            return self.report

        def progress(index: int, p: Any) -> None:
            callback(self.ready[index][p.job].name, p)

        with contextlib.ExitStack() as stack:
            stack.callback(self.pend_running)
            if cluster is None:
                runs = Here(self.ready, self.config, callback and progress, every, self.started)
            else:
                ray = stack.enter_context(Cluster(cluster, worker_cpus))
                work = [(items[0].shape, [p.job for p in items]) for items in self.ready]
                runs = ray.run(work, self.config, on_start=self.started, on_progress=callback and progress)
            stack.enter_context(contextlib.closing(runs))  # its workers end before Ray does
            for index, outcome in runs:
                results = outcome if isinstance(outcome, list) else [outcome] * len(self.ready[index])
                for item, result in zip(self.ready[index], results):
                    while True:  # Ctrl-C while an outcome is written: it is finished first, then the runs hear of it
                        try:
                            self.keep(item, result)
                            break
                        except KeyboardInterrupt:
                            runs.interrupt()
        return self.report

    def ended(self, item: Planned, status: str, reason: str | None = None) -> None:
        """A job's status (and why) into the report, the log and ``on_job``."""
        if status == "failed":
            self.report.failures[item.name] = reason
        self.log.set(item.name, status, reason)
        if self.on_job and (status != "pending" or reason):
            self.on_job(item.name, reason if status == "pending" else status)

    def started(self, index: int, where: str, attempt: int) -> None:
        """Group ``index`` is running, on ``where``, for the ``attempt``-th time."""
        for item in self.ready[index]:
            self.log.set(item.name, "running", worker=where, attempts=attempt)

    def pend_running(self) -> None:
        """The batch stops: a job still running is pending again."""
        for name, row in self.log.rows.items():
            if row["status"] == "running":
                self.log.set(name, "pending")

    def keep(self, item: Planned, result: Any) -> None:
        """Write a job's outcome: its PNG and its line in the log."""
        if isinstance(result, ClusterError):
            self.ended(item, "failed", str(result))
        elif isinstance(result, BaseException):
            self.ended(item, "failed", f"{type(result).__name__}: {result}")
        elif result is None:  # interrupted before it started
            self.ended(item, "pending")
        else:
            result.sources["batch"] = {"key": item.key, "name": item.name}
            result.save(item.output)
            if result.stopped == "interrupted":
                self.ended(item, "pending", "interrupted")
            elif not result.complete:
                self.ended(item, "failed", f"stopped early: {result.stopped}")
            else:
                self.report.results[item.name] = result
                self.ended(item, "done")
