"""Will a run fit in memory? An estimate from VGG19's shape, checked before
the run starts, so a too-large size gets advice instead of an opaque crash.

The estimate counts the activations VGG19 keeps up to the deepest layer
used (each block halves the image and has 64 ... 512 channels), times a
factor for the backward pass and XLA's buffers, plus TensorFlow and the
model themselves. The factor depends on TensorFlow's CPU allocator: with
oneDNN on (as `import nst` sets it), a pool that keeps freed memory for
reuse (faster steps, more memory); with TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 or
oneDNN off, the system's. Calibrated on this project's CPU machine (report
preset, float32), peak resident memory: with the pool 1.37 GB at 256 px,
2.05 GB at 512 px, 5.31 GB at 1024 px; with the system allocator 1.58 GB at
512 px, 3.09 GB at 1024 px. The estimate is within 5% of these. No
TensorFlow is imported here.
"""

from __future__ import annotations

import os

from nst.base.config import MAX_SIZE, Config, ConfigError
from nst.base.geometry import VGG19_CONV_LAYERS, channels, deepest, stride

#: Bytes that TensorFlow, Keras and the model take before any image.
BASE_BYTES = 1.05e9
#: Peak bytes per byte of kept activations (forward, backward, XLA buffers),
#: with TensorFlow's oneDNN memory pool and with the system allocator.
POOLED_FACTOR, SYSTEM_FACTOR = 4.6, 2.2
#: A tiled run's arrays of the whole image's size, per output pixel: the
#: image, the best and evaluated images, the gradient (and its copies) and
#: Adam's two moments in float32 (~10 x 12 bytes), and the content target
#: at block4 (512 channels at 1/64 of the pixels, 32 bytes).
TILED_BYTES_PER_PIXEL = 150
#: Tile sides the memory advice tries, largest first.
TILES = (512, 256, 128)
#: Set before TensorFlow starts, this keeps oneDNN but drops its memory pool.
SYSTEM_ALLOCATOR_VARIABLE = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"


def pooled_allocator() -> bool:
    """Whether TensorFlow's CPU memory goes through oneDNN's pool, as the
    environment says: oneDNN not turned off (unset, TensorFlow's default
    depends on the CPU; the larger estimate is the safe one) and the system
    allocator not asked for."""

    def setting(name: str, default: str) -> bool:
        return os.environ.get(name, default).strip().lower() in ("1", "true")

    return setting("TF_ENABLE_ONEDNN_OPTS", "1") and not setting(SYSTEM_ALLOCATOR_VARIABLE, "0")


def estimate_bytes(config: Config, height: int, width: int, batch: int = 1, *, pooled: bool | None = None) -> int:
    """Approximate peak memory of a run on a ``height`` x ``width`` output
    (of ``batch`` such runs optimised together), with oneDNN's memory pool
    or without (default: as the environment says)."""
    pooled = pooled_allocator() if pooled is None else pooled
    whole = 0
    if config.tile:  # VGG19 sees one tile (its core and halo) at a time
        whole = TILED_BYTES_PER_PIXEL * height * width * batch
        side = -(-config.tile // config.min_side) * config.min_side + 2 * config.tile_halo
        height, width = min(height, side), min(width, side)
    floats = 0
    for layer in VGG19_CONV_LAYERS[: deepest(config.content_layers + config.style_layers) + 1]:
        floats += (height // stride(layer)) * (width // stride(layer)) * channels(layer)
    return int(BASE_BYTES + whole + (POOLED_FACTOR if pooled else SYSTEM_FACTOR) * 4 * floats * batch)


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


def auto_tile(config: Config, height: int, width: int, available: int | None = None) -> int | None:
    """``None`` where a ``height`` x ``width`` run fits in memory untiled;
    else the largest of `TILES` that fits (the smallest if none does)."""
    available = available_bytes() if available is None else available
    untiled = config.replace(tile=None)
    if available is None or estimate_bytes(untiled, height, width) <= available:
        return None
    return next((t for t in TILES if estimate_bytes(untiled.replace(tile=t), height, width) <= available), TILES[-1])


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
    tiles = [t for t in TILES if t < (config.tile or MAX_SIZE)]
    tile = next((t for t in tiles if estimate_bytes(config.replace(tile=t), height, width, batch) <= available), None)
    if tile:
        advice = f"use tile={tile} (the same result, computed in tiles of {tile} px)"
    else:
        advice = f"use size={fits} or smaller" if fits else "free some memory"
        advice += " (coarse to fine, scales=, reaches large sizes only at its last scale)"
    without_pool = estimate_bytes(config, height, width, batch, pooled=False)
    if pooled_allocator() and without_pool <= available:
        advice += (
            f", start Python with {SYSTEM_ALLOCATOR_VARIABLE}=1 (TensorFlow then keeps no memory pool: about "
            f"{without_pool / 2**30:.1f} GiB, steps ~6% slower)"
        )
    raise ConfigError(
        f"{what} {width} x {height} output needs about {needed / 2**30:.1f} GiB of memory and "
        f"{available / 2**30:.1f} GiB is available: {advice}, or run on a machine with more memory."
    )


def _largest_fitting_size(config: Config, height: int, width: int, available: int, batch: int) -> int | None:
    longest = max(height, width)
    for size in range(longest, 15, -16):
        if estimate_bytes(config, height * size // longest, width * size // longest, batch) <= available:
            return size
    return None
