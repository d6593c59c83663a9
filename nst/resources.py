"""Will a run fit in memory? An estimate from VGG19's shape, checked before
the run starts, so a too-large size gets advice instead of an opaque crash.

The estimate counts the activations VGG19 keeps up to the deepest layer
used (each block halves the image and has 64 ... 512 channels), times a
factor for the backward pass and XLA's buffers, plus TensorFlow and the
model themselves. Calibrated on this project's CPU machine (report preset,
float32): peak resident memory 1.37 GB at 256 px, 2.05 GB at 512 px, 5.31 GB
at 1024 px; the estimate is within 5% of these. No TensorFlow is imported here.
"""

from __future__ import annotations

import os

from nst.config import VGG19_BLOCK_CHANNELS, VGG19_CONV_LAYERS, Config, ConfigError

#: Bytes that TensorFlow, Keras and the model take before any image.
BASE_BYTES = 1.05e9
#: Peak bytes per byte of kept activations (forward, backward, XLA buffers).
ACTIVATION_FACTOR = 4.6


def estimate_bytes(config: Config, height: int, width: int, batch: int = 1) -> int:
    """Approximate peak memory of a run on a ``height`` x ``width`` output
    (of ``batch`` such runs optimised together)."""
    deepest = max(VGG19_CONV_LAYERS.index(layer) for layer in config.content_layers + config.style_layers)
    floats = 0
    for layer in VGG19_CONV_LAYERS[: deepest + 1]:
        block = int(layer[5])
        scale = 2 ** (block - 1)
        floats += (height // scale) * (width // scale) * VGG19_BLOCK_CHANNELS[block]
    return int(BASE_BYTES + ACTIVATION_FACTOR * 4 * floats * batch)


def available_bytes() -> int | None:
    """Memory available to a new allocation on this machine (None if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(config: Config, height: int, width: int, available: int | None = None, batch: int = 1) -> None:
    """Raise ConfigError, with a size that would fit, if a run on a
    ``height`` x ``width`` output (``batch`` of them at once) is estimated to
    need more memory than is available."""
    available = available_bytes() if available is None else available
    needed = estimate_bytes(config, height, width, batch)
    if available is None or needed <= available:
        return
    fits = _largest_fitting_size(config, height, width, available, batch)
    what = f"{batch} runs at once on a" if batch > 1 else "a"
    advice = f"use --size {fits} or smaller" if fits else "free some memory"
    raise ConfigError(
        f"{what} {width} x {height} output needs about {needed / 2**30:.1f} GiB of memory and "
        f"{available / 2**30:.1f} GiB is available: {advice} (coarse to fine, --scales, reaches large sizes "
        f"only at its last scale), or run on a machine with more memory."
    )


def _largest_fitting_size(config: Config, height: int, width: int, available: int, batch: int) -> int | None:
    longest = max(height, width)
    for size in range(longest, 15, -16):
        if estimate_bytes(config, height * size // longest, width * size // longest, batch) <= available:
            return size
    return None
