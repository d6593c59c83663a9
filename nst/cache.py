"""Where nst keeps what it makes once, and which machine it is on.

One folder (`cache_dir`) holds the downloads, uploads, installed weights,
normalised networks, measured paths (`nst.paths`) and XLA's compiled
programs. XLA's go in a subfolder per CPU (`cpu`) and TensorFlow version
(`xla_dir`): a program compiled for one CPU's instructions must never be
loaded on another that shares the folder (a Drive folder in Colab). This
module reads only the environment, so `nst.backend` can point TensorFlow at
it before TensorFlow loads.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path

#: CPU flags that decide which kernels TensorFlow and XLA use.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "neon", "asimd")


def cache_dir() -> Path:
    """Where nst keeps files: $NST_CACHE, else $XDG_CACHE_HOME/nst, else ~/.cache/nst."""
    if os.environ.get("NST_CACHE"):
        return Path(os.environ["NST_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nst"


@functools.cache
def cpu() -> tuple[str, tuple[str, ...]]:
    """This machine's CPU model and which of `CPU_FLAGS` it has (Linux's
    /proc/cpuinfo; elsewhere the platform's name and no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
            elif name.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    return model, tuple(f for f in CPU_FLAGS if f in flags)


def xla_dir() -> Path:
    """XLA's persistent compilation cache for this CPU and TensorFlow version."""
    model, flags = cpu()
    version = next((v for name in ("tensorflow", "tensorflow-cpu", "tf-nightly") if (v := _version(name))), "other")
    key = hashlib.sha256(f"{model} {' '.join(flags)} {platform.machine()} {version}".encode()).hexdigest()[:12]
    return cache_dir() / "xla" / key


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
