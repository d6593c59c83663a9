"""Adam's second moments as a small record in a PNG's metadata, so that
`--resume` (or `--init` of an earlier output) goes on with Adam's state
rather than starting it cold. Plain numpy, no TensorFlow."""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

import numpy as np

from nst.base.config import MAX_SIZE
from nst.io.images import ImageError, reason

#: Adam's second moments are recorded as the maximum over pool x pool pixel
#: blocks, as float16 base-2 logarithms (they reach 1e16): never below the
#: real ones, so a resumed run's steps are never larger than the run's own
#: would have been. The pool starts at 8 pixels and doubles until the record
#: is at most MOMENTS_BYTES (a few kB at 512 px; the same at 8192 px).
MOMENTS_POOL, MOMENTS_BYTES = 8, 192 * 1024


def pack_moments(velocity: np.ndarray, iterations: int) -> dict[str, Any]:
    """One image's Adam second moments (height, width, channels) and step
    count as a JSON-ready record for a PNG's metadata."""
    h, w, c = velocity.shape
    pool = MOMENTS_POOL
    while -(-h // pool) * -(-w // pool) * c * 2 > MOMENTS_BYTES:
        pool *= 2
    padded = np.pad(velocity, [(0, -h % pool), (0, -w % pool), (0, 0)])
    pooled = padded.reshape(-(-h // pool), pool, -(-w // pool), pool, c).max(axis=(1, 3))
    with np.errstate(divide="ignore"):  # log2(0) = -inf, which float16 holds
        exact = np.log2(pooled)
    rounded = exact.astype(np.float16)
    rounded = np.where(rounded < exact, np.nextafter(rounded, np.float16(np.inf)), rounded)  # round up
    return {
        "iterations": int(iterations),
        "pool": pool,
        "shape": list(rounded.shape),
        "velocity": base64.b64encode(rounded.tobytes()).decode(),
    }


def unpack_moments(record: Any, source: str | os.PathLike) -> tuple[int, int, np.ndarray]:
    """Inverse of `pack_moments`, checked: the step count, the pool and the
    pooled log2 moments (small: nothing is expanded here, so a hostile
    record costs no memory). A record that is not one raises ImageError
    naming ``source``."""
    try:
        iterations, pool, shape = record["iterations"], record["pool"], tuple(record["shape"])
        whole = [iterations, pool, *shape]
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in whole) or len(shape) != 3:
            raise ValueError("not whole numbers")
        if iterations < 0:
            raise ValueError(f"{iterations} steps")
        if not 1 <= pool <= MAX_SIZE or not all(1 <= n * pool < MAX_SIZE + pool for n in shape[:2]) or shape[2] != 3:
            raise ValueError(f"shape {list(shape)} with pool {pool} is not an image's")
        data = base64.b64decode(record["velocity"], validate=True)
        pooled = np.frombuffer(data, np.float16).reshape(shape)
        if np.isnan(pooled).any() or (pooled == np.inf).any():
            raise ValueError("NaN or infinite moments")
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise ImageError(f"{os.fspath(source)}: its record of Adam's state is damaged ({reason(e)}).") from None
    return iterations, pool, pooled


def expand_moments(pool: int, pooled: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The second moments of a ``height`` x ``width`` image from a record
    (each pooled value over its pool x pool block), or None when the record
    was made at another size."""
    if pooled.shape[:2] != (-(-height // pool), -(-width // pool)):
        return None
    v = np.repeat(np.repeat(pooled, pool, axis=0), pool, axis=1)[:height, :width]
    return np.exp2(v.astype(np.float32))
