"""Where nst keeps what it makes once, and which machine it is on.

One folder (`cache_dir`) holds the downloads, uploads, installed weights,
normalised networks, measured paths (`nst.core.execution`) and XLA's compiled
programs. XLA's go in a subfolder per CPU (`cpu`) and TensorFlow version
(`xla_dir`): a program compiled for one CPU's instructions must never be
loaded on another that shares the folder (a Drive folder in Colab). This
module reads only the environment, so `nst.base.backend` can point TensorFlow at
it before TensorFlow loads.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path


def cache_dir() -> Path:
    """Where nst keeps files: $NST_CACHE, else $XDG_CACHE_HOME/nst, else ~/.cache/nst."""
    if os.environ.get("NST_CACHE"):
        return Path(os.environ["NST_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nst"


@functools.cache
def cpu() -> tuple[str, tuple[str, ...]]:
    """This machine's CPU model (on ARM, its implementer and part) and all
    its instruction-set flags, from Linux's /proc/cpuinfo (elsewhere: the
    platform's name and no flags)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    arm = [fields.get("CPU implementer"), fields.get("CPU part")]
    model = fields.get("model name") or " ".join(filter(None, [platform.processor() or platform.machine(), *arm]))
    return model, tuple(sorted((fields.get("flags") or fields.get("Features") or "").split()))


def xla_dir() -> Path:
    """XLA's persistent compilation cache for this CPU and TensorFlow version."""
    model, flags = cpu()
    version = next((v for name in ("tensorflow", "tensorflow-cpu", "tf-nightly") if (v := _version(name))), "other")
    identity = f"{model} {' '.join(flags)} {platform.machine()} {version}"
    key = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return cache_dir() / "xla" / key


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
