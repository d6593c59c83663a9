"""The fastest way to run a step on this machine, found by measuring it.

Three settings change how fast a step runs, not what it computes:

- ``jit_compile``: XLA, or TensorFlow's own kernels (oneDNN's on a CPU with
  AVX-512, which beat XLA's convolutions there; without AVX-512 XLA won);
- ``precision``: float32, or the device's 16-bit arithmetic where it is
  native (bfloat16 on a CPU with AVX512_BF16 or AMX and on a TPU, float16
  on a GPU with Adam);
- ``pooling_op``: Keras' pooling layers, or `nst.core.features.Pool2x2`'s
  reshape and reduction (lighter under XLA).

No fixed choice is fastest everywhere (BENCHMARKS.md), so each one a run
leaves open (precision 'auto', ``jit_compile`` or ``pooling_op`` None) is
settled here (`choose`): by an earlier measurement on this machine, kept in
``$NST_CACHE/paths.json`` per machine fingerprint (`fingerprint`),
program settings and image size; else, for a run long enough to repay it
(`MEASURE_PIXELS`, `MEASURE_STEPS`), by timing the first steps of the run
itself on each candidate now (a `Probe`: the run driver's `Run`, at the
largest scale); else by `UNMEASURED`. A
candidate counts only if its objective stays within `AGREE` of float32's
over those steps, and the one with the least expected time for the run's
steps (compilation included) wins. The precision and XLA are measured
together (each pair from the same start); the pooling op is then measured
with the winning pair.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Protocol

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX (Windows): measurements are written unlocked
    fcntl = None

from nst import __version__
from nst.base.backend import tf
from nst.base.cache import cache_dir, cpu
from nst.base.config import POOLING_OPS, PRECISIONS, UNMEASURED, Config
from nst.core.device import Device
from nst.core.engine import PROGRAM

#: A run is measured when its largest scale has this many pixels (256 x 128)
#: and this many steps: below, the measurement costs more than it can save.
MEASURE_PIXELS, MEASURE_STEPS = 2**15, 100
#: Steps timed per candidate, after the first (which compiles).
PROBE_STEPS = 3
#: The file, in the cache folder, that keeps each measurement: per key, each
#: path's name and its seconds (first step, later steps), or null where the
#: path's objective strayed.
REMEMBERED = "paths.json"
#: The clock measurements read (a test gives them one that only its fake probes move).
clock = time.perf_counter
#: A faster path must keep the objective within this of float32's, on
#: average over those steps (bfloat16 evaluates it ~0.6% low at 512 px).
AGREE = 0.01


@dataclass(frozen=True)
class Path:
    """One way to run a step: the three settings `nst.core.execution` chooses."""

    precision: str
    jit_compile: bool
    pooling_op: str

    def fields(self) -> dict[str, object]:
        """The three as `Config` fields."""
        return dataclasses.asdict(self)

    @property
    def name(self) -> str:
        """Short and unique, e.g. 'mixed_bfloat16/tf/keras' (the keys of `REMEMBERED`)."""
        return f"{self.precision}/{'xla' if self.jit_compile else 'tf'}/{self.pooling_op}"

    @classmethod
    def named(cls, name: str) -> Path:
        """The path ``name`` (see `name`) stands for."""
        precision, kernels, pooling_op = name.split("/")
        return cls(precision, kernels == "xla", pooling_op)

    def __str__(self) -> str:
        kernels = "XLA" if self.jit_compile else "TensorFlow kernels"
        return f"{self.precision}, {kernels}, {self.pooling_op} pooling"


class Probe(Protocol):
    """The run on one path, stepped by the measurement (`nst.run.driver.Run`)."""

    def advance(self) -> float:
        """One step more; the objective it reported, summed over the batch."""

    def release(self) -> None:
        """Let other runs have what it holds."""


@dataclass(frozen=True)
class Choice:
    """The path a run takes, and how it was settled: 'set' (by the run's
    settings), 'measured' (now), 'remembered' (measured earlier on this
    machine) or 'unmeasured' (`UNMEASURED`); ``seconds`` holds what was
    measured for each path: (first step, later steps), seconds."""

    path: Path
    how: str
    seconds: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        if not self.seconds:
            return f"{self.path} ({self.how})"
        measured = ", ".join(f"{name}: {step:.3g} s/step" for name, (_, step) in self.seconds.items())
        return f"{self.path} ({self.how} on this machine; {measured})"


def fingerprint(device: Device) -> str:
    """What makes this machine's timings this machine's: the CPU model and
    the flags that pick kernels, the cores and the threads TensorFlow may use, the device, TensorFlow's and
    nst's versions, and whether oneDNN was turned off (TensorFlow's x86
    Linux builds have it on unless TF_ENABLE_ONEDNN_OPTS=0)."""
    model, flags = cpu()
    onednn = "off" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "on"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # A process held to fewer threads (a Ray worker given part of the cores: `nst.modes.cluster`) is another machine.
    threads = tf.config.threading.get_intra_op_parallelism_threads() or cores
    return (
        f"{model} [{' '.join(flags)}] x{cores}, {threads} threads; {device.kind}: {device.description}; "
        f"TF {tf.__version__}; nst {__version__}; oneDNN {onednn}"
    )


def sixteen_bit(config: Config, device: Device) -> str | None:
    """The 16-bit precision worth trying here, if any: float16 on a GPU
    (with Adam: L-BFGS's gradients are not loss-scaled), bfloat16 on a TPU
    and on a CPU that computes it natively."""
    if device.kind == "GPU":
        return "mixed_float16" if config.optimizer == "adam" else None
    if device.kind == "TPU":
        return "mixed_bfloat16"
    if device.kind == "CPU" and {"avx512_bf16", "amx_bf16"} & set(cpu()[1]):
        return "mixed_bfloat16"
    return None


def candidates(config: Config, device: Device) -> tuple[list[Path], list[str]]:
    """The paths to measure for ``config`` (those its settings leave open;
    the first is the reference: float32 where it is one) and the pooling ops
    to try with the winner."""
    if config.precision != "auto":
        precisions = [config.precision]
    else:
        precisions = ["float32", *filter(None, [sixteen_bit(config, device)])]
    jits = [True, False] if config.jit_compile is None else [config.jit_compile]
    if config.jit_compile is None and not xla_worth_trying(config, device):
        jits = [False]
    pooling_op = config.pooling_op or UNMEASURED["pooling_op"]
    paths = [Path(p, j, pooling_op) for p in precisions for j in jits]
    others = [op for op in POOLING_OPS if op != pooling_op] if config.pooling_op is None else []
    return paths, others


def xla_worth_trying(config: Config, device: Device) -> bool:
    """Whether XLA can be the faster path: not for the W2 style loss on a
    CPU, whose eigendecompositions XLA computes many times slower than
    TensorFlow's kernels (`nst.core.wasserstein.root_trace`; BENCHMARKS.md, "Numbers behind the code's choices")."""
    return not (config.style_loss == "w2" and device.kind == "CPU")


def unmeasured(config: Config, device: Device) -> Path:
    """The path of a run nothing was measured for (see `UNMEASURED`; W2 on
    a CPU: TensorFlow's kernels, `xla_worth_trying`)."""
    jit = UNMEASURED["jit_compile"] and xla_worth_trying(config, device)
    return Path(
        UNMEASURED["precision"] if config.precision == "auto" else config.precision,
        jit if config.jit_compile is None else config.jit_compile,
        config.pooling_op or UNMEASURED["pooling_op"],
    )


def choose(
    config: Config, device: Device, shape: tuple[int, ...], steps: int, probe_for: Callable[[Path], Probe] | None
) -> Choice:
    """The path for a run of ``steps`` steps on images of ``shape`` (batch,
    height, width, channels) with ``config`` on ``device``. ``probe_for(path)``
    gives the run on that path from its start at its largest scale
    (released here), to measure with; ``None``: never measure now."""
    paths, others = candidates(config, device)
    if len(paths) == 1 and not others:
        return Choice(paths[0], "set")
    key = _key(config, device, shape)
    seconds = _entry(_remembered().get(key))
    how = "remembered"
    if seconds is None:
        pixels = math.prod(shape[1:3])
        if probe_for is None or pixels < MEASURE_PIXELS or steps < MEASURE_STEPS:
            return Choice(unmeasured(config, device), "unmeasured")
        seconds, how = _measure(paths, others, probe_for), "measured"
        _remember(key, seconds)
    usable = {name: s for name, s in seconds.items() if s is not None}
    if not usable:  # not even float32 gave a finite objective: the run will say so
        return Choice(unmeasured(config, device), "unmeasured")
    best = min(usable, key=lambda name: usable[name][0] + (steps - 1) * usable[name][1])
    return Choice(Path.named(best), how, {name: tuple(s) for name, s in usable.items()})


def _measure(
    paths: list[Path], others: list[str], probe_for: Callable[[Path], Probe]
) -> dict[str, tuple[float, float] | None]:
    """Time each path: (first step, median of the later ones), or None for
    one whose objective strays from the first path's (or is not finite).
    The paths take turns, step by step, so a drift in the machine's speed
    (a shared machine) hits them all alike."""
    objective, times = _race(paths, probe_for)
    reference = objective[paths[0]]

    def agrees(path: Path) -> bool:
        drift = np.abs(objective[path] - reference) / np.abs(reference)
        return bool(np.all(np.isfinite(objective[path])) and np.mean(drift) <= AGREE)

    usable = [path for path in paths if agrees(path)]
    if usable and others:  # the pooling ops, on the fastest pair
        fastest = min(usable, key=lambda path: statistics.median(times[path][1:]))
        rivals = [dataclasses.replace(fastest, pooling_op=op) for op in others]
        more, more_times = _race([fastest, *rivals], probe_for)
        objective.update({path: more[path] for path in rivals})
        # The fastest pair's first step (its compilation) is the first race's.
        times.update({**more_times, fastest: [times[fastest][0], *more_times[fastest][1:]]})
        usable += [path for path in rivals if agrees(path)]
    return {
        path.name: (times[path][0], statistics.median(times[path][1:])) if path in usable else None for path in times
    }


def _race(
    paths: list[Path], probe_for: Callable[[Path], Probe]
) -> tuple[dict[Path, np.ndarray], dict[Path, list[float]]]:
    """Each path's objective at the run's first steps, and the seconds each
    step took (the first compiles), the paths taking turns."""
    probes: dict[Path, Probe] = {}
    objective: dict[Path, list[float]] = {path: [] for path in paths}
    times: dict[Path, list[float]] = {path: [] for path in paths}
    try:
        for path in paths:
            probes[path] = probe_for(path)
        for _ in range(PROBE_STEPS + 1):
            for path, probe in probes.items():
                t = clock()
                objective[path].append(probe.advance())
                times[path].append(clock() - t)
    finally:
        for probe in probes.values():
            probe.release()
    return {path: np.array(values, dtype=np.float64) for path, values in objective.items()}, times


def _key(config: Config, device: Device, shape: tuple[int, ...]) -> str:
    """What a measurement holds for: this machine, the program's settings
    (with those of the path as given: open, or forced) and the image's size
    (its pixels, to the nearest power of two)."""
    settings = {name: getattr(config, name) for name in PROGRAM}
    size = (shape[0], round(math.log2(max(math.prod(shape[1:3]), 1))), shape[-1])
    text = json.dumps([fingerprint(device), settings, size], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def remembered_file() -> FilePath:
    """Where measurements are kept (`REMEMBERED` in the cache folder)."""
    return cache_dir() / REMEMBERED


def _remembered() -> dict[str, dict]:
    """Every measurement kept; {} where there is none or the file is not an
    object of them (a damaged file is measured over, never trusted)."""
    try:
        kept = json.loads(remembered_file().read_text())
    except (OSError, ValueError):  # none yet, or unreadable: measure again
        return {}
    return kept if isinstance(kept, dict) else {}


def _entry(seconds: object) -> dict[str, tuple[float, float] | None] | None:
    """A kept measurement as `_measure` made it, or None where it is not one
    (each path's name, and its two finite seconds or null)."""
    if not isinstance(seconds, dict) or not seconds:
        return None
    entry = {}
    for name, value in seconds.items():
        try:
            path = Path.named(name)
        except ValueError:
            return None
        if (
            path.name != name
            or path.precision not in PRECISIONS
            or path.precision == "auto"
            or path.pooling_op not in POOLING_OPS
        ):
            return None
        if value is None:
            entry[name] = None
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            if not all(math.isfinite(v) and v >= 0 for v in value):
                return None
            entry[name] = (float(value[0]), float(value[1]))
        else:
            return None
    return entry


def _remember(key: str, seconds: dict) -> None:
    """Keep a measurement: read, merged and written whole under a lock (two
    processes sharing the cache, e.g. Ray workers on one node, each keep
    theirs), then renamed into place (never half a file). A cache that
    cannot be written leaves nothing behind: the next run measures again."""
    file = remembered_file()
    partial = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with _locked(file.with_suffix(".lock")):
            kept = {**_remembered(), key: seconds}
            handle, partial = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
            with os.fdopen(handle, "w") as out:
                out.write(json.dumps(kept, indent=1))
            os.replace(partial, file)
            partial = None
    except OSError:
        pass
    finally:
        if partial is not None:
            FilePath(partial).unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(lock: FilePath) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (POSIX ``flock``; where
    there is none, no lock)."""
    with open(lock, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
