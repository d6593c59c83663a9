"""The paper's normalised VGG19: every filter's mean activation made one.

Gatys et al. used VGG19 "normalized by scaling the weights such that the
mean activation of each convolutional filter over images and positions is
equal to one". A ReLU network allows this without changing what it
computes, up to one positive scale per feature map: dividing a filter's
kernel and bias by ``m`` divides its (rectified) map by ``m``, pooling
commutes with that, and multiplying the next layer's weights on that
channel by ``m`` undoes it downstream. Done from the bottom, with ``m_l``
each filter's mean activation in the original network, every map of the
normalised network is the original map divided by its mean, so its mean
over the same images is exactly one. Filters dead on every image (mean 0)
are left as they are.

The paper took the means over the ILSVRC validation images; here they come
from a documented image set: the five sample images (``'samples'``, the
default) or every image in a folder, each with its longest side at
`STATS_SIZE` pixels. They are computed once per weights, pooling, padding and image
set and cached in ``$NST_CACHE/normalize/`` (a shared weights folder may be
read-only); outputs record which images were used.

Why it matters: Keras' VGG19 has activations that grow with depth (means of
~100 at block3_conv1, ~260 at block4_conv2), so each layer's weight in the
objective depends on its scale; the paper's alpha/beta assume this network.

TensorFlow is imported only to take the means, so that the command line can
check the image set before it loads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from nst.base.cache import cache_dir
from nst.io.images import SAMPLES, ImageError, load_image, sample_path, write_atomic

#: Longest side, in pixels, of each image the means are taken over.
STATS_SIZE = 512
#: A filter's mean counts as at least this fraction of its layer's median.
RARE = 0.1
#: Files taken from a folder of statistics images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def stats_images(source: str) -> list[Path]:
    """The images that ``source`` names: 'samples' (the sample images) or
    a folder (its image files, sorted by name)."""
    if source == "samples":
        return [sample_path(name) for name in SAMPLES]
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise ImageError(f"{source}: no such folder of images to normalise VGG19 over. Give a folder or 'samples'.")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not found:
        raise ImageError(
            f"{source}: no images ({', '.join(IMAGE_SUFFIXES)}) to normalise VGG19 over. "
            f"Give a folder of photos or 'samples'."
        )
    return found


def filter_means(convs: list, layers: list, images: list[Path]) -> list[np.ndarray]:
    """Each conv layer's mean activation per filter over ``images`` and
    positions, in the original network (``layers``: the network's Keras
    layers in order after its input, ``convs`` the conv layers among them)."""
    from nst.base.backend import tf

    sums = [np.zeros(conv.filters, np.float64) for conv in convs]
    positions = np.zeros(len(convs))
    for path in images:
        x = tf.keras.applications.vgg19.preprocess_input(load_image(path, STATS_SIZE)[None] * 255.0)
        done = 0
        for layer in layers:
            x = layer(x)
            if layer in convs:
                i = convs.index(layer)
                sums[i] += tf.reduce_sum(tf.cast(x, tf.float64), axis=[0, 1, 2]).numpy()
                positions[i] += int(x.shape[1]) * int(x.shape[2])
                done += 1
                if done == len(convs):
                    break
    return [s / n for s, n in zip(sums, positions)]


def rescale(convs: list, means: list[np.ndarray]) -> None:
    """Divide each filter by its mean and multiply the next layer's weights
    on that channel by it. Means under `RARE` times the layer's median count
    as that: a filter that hardly fires on the statistics images has a mean
    they cannot estimate, and dividing by it would blow its map up (one
    such block4_conv2 filter on the samples: 1/40,000 of the median)."""
    previous = np.ones(3)
    for conv, mean in zip(convs, means):
        scale = np.maximum(mean, RARE * np.median(mean))
        kernel, bias = conv.get_weights()
        kernel = kernel * previous[None, None, :, None] / scale[None, None, None, :]
        conv.set_weights([kernel.astype(np.float32), (bias / scale).astype(np.float32)])
        previous = scale


def normalize(convs: list, layers: list, weights: str, network: str, source: str) -> dict[str, Any]:
    """Normalise the network in place over the images ``source`` names
    (``network``: what else its means depend on, its pooling and padding);
    returns what outputs record about it (the images and the cache file)."""
    images = stats_images(source)
    key = json.dumps(
        {
            "weights": _identity(weights),
            "network": network,
            "size": STATS_SIZE,
            "layers": [c.name for c in convs],
            "images": [_identity(str(p)) for p in images],
        },
        sort_keys=True,
    )
    cached = cache_dir() / "normalize" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    means = None
    if cached.is_file() and weights != "random":
        try:
            with np.load(cached, allow_pickle=False) as saved:
                means = [saved[conv.name] for conv in convs]
        except Exception:  # a damaged cache file is recomputed
            means = None
    if means is None:
        means = filter_means(convs, layers, images)
        if weights != "random":  # random weights differ by seed: not worth a cache
            try:
                write_atomic(cached, _npz_bytes({conv.name: m for conv, m in zip(convs, means)}))
            except OSError:
                pass  # no cache: computed again next time
    rescale(convs, means)
    return {
        "images": [p.name for p in images],
        "source": source,
        "size": STATS_SIZE,
        "dead_filters": int(sum((m <= 0).sum() for m in means)),
    }


def _identity(path: str) -> list:
    """What identifies a file for the cache: path, size and modification time."""
    if path in ("imagenet", "random"):
        return [path]
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
