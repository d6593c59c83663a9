"""Where a run executes: a TPU, a GPU or the CPU, as a `tf.distribute` strategy.

The engine and the notebooks share this. `current()` picks once per process:

- a TPU when one is attached (Colab's TPU runtime, or $TPU_NAME): the TPU
  system is initialised and a `TPUStrategy` over **one** core runs a single
  image (more cores would only repeat the same work);
- else the first GPU, through `OneDeviceStrategy`;
- else the CPU, through TensorFlow's default strategy.

Each also has a ``spread`` strategy over all devices of its kind, for a
batch of independent runs (`nst.stylize_many`): `TPUStrategy` over every TPU
core, `MirroredStrategy` over every GPU, or over the logical CPU devices if
more than one is configured (how the tests check it); with one device it is
the single-device strategy.

Variables (the images, Adam's moments, VGG19's weights) are created in the
strategy's scope and each step runs through ``strategy.run``, so the same
code serves all of them.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from nst.base.backend import tf
from nst.base.config import DEVICES


@dataclass(frozen=True)
class Device:
    """A place to run: its kind ('TPU', 'GPU', 'CPU'), a description for
    people, the `tf.distribute.Strategy` that places one run there, and the
    one that spreads a batch of runs over all devices of that kind."""

    kind: str
    description: str
    strategy: tf.distribute.Strategy
    spread: tf.distribute.Strategy

    def __str__(self) -> str:
        return f"{self.kind}: {self.description}"


@functools.lru_cache(maxsize=4)
def current(kind: str = "auto") -> Device:
    """The device runs use (``kind`` 'auto': TPU, else GPU, else CPU),
    chosen once per process. $NST_DEVICE ('tpu', 'gpu', 'cpu') overrides 'auto'."""
    kind = (os.environ.get("NST_DEVICE") or kind).lower() if kind == "auto" else kind.lower()
    if kind not in DEVICES:
        raise ValueError(f"unknown device {kind!r}; choose one of: {', '.join(DEVICES)}")
    if kind in ("auto", "tpu"):
        tpu = _tpu()
        if tpu is not None:
            return tpu
        if kind == "tpu":
            raise RuntimeError("no TPU found: in Colab choose Runtime > Change runtime type > TPU, or set TPU_NAME")
    gpus = tf.config.list_logical_devices("GPU")
    if kind in ("auto", "gpu") and gpus:
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        name = details.get("device_name", gpus[0].name)
        one = tf.distribute.OneDeviceStrategy(gpus[0].name)
        spread = tf.distribute.MirroredStrategy([g.name for g in gpus]) if len(gpus) > 1 else one
        return Device("GPU", f"{name} ({len(gpus)} found)", one, spread)
    if kind == "gpu":
        raise RuntimeError("no GPU found: in Colab choose Runtime > Change runtime type > GPU")
    cores = os.cpu_count() or 1
    cpus = tf.config.list_logical_devices("CPU")
    default = tf.distribute.get_strategy()
    spread = tf.distribute.MirroredStrategy([c.name for c in cpus]) if len(cpus) > 1 else default
    return Device("CPU", f"{cores} cores, {len(cpus)} logical device(s)", default, spread)


def _tpu() -> Device | None:
    """A one-core TPUStrategy if a TPU is reachable, else None."""
    if not (os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0")):
        return None
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        topology = tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError):
        return None
    assignment = tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=1)
    one = tf.distribute.TPUStrategy(resolver, experimental_device_assignment=assignment)
    cores = topology.num_tasks * topology.num_tpus_per_task
    return Device("TPU", f"{resolver.master() or 'local'} ({cores} cores)", one, tf.distribute.TPUStrategy(resolver))
