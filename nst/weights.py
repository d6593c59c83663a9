"""Where VGG19's weights come from, checked before TensorFlow loads.

``weights`` is 'imagenet' (Keras downloads and caches them), 'random'
(plumbing and timing only), or the path of a Keras ``.h5`` file or an
``.npz`` of ``<layer>/kernel`` and ``<layer>/bias`` arrays (never pickles).
Unset, it is the file named by ``$NST_VGG19_WEIGHTS``, else 'imagenet'.
Nothing here imports TensorFlow, so the command line can refuse a missing
file, or one without the layers a run needs, at once.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from nst.config import VGG19_CONV_LAYERS

WEIGHTS_ENV = "NST_VGG19_WEIGHTS"


class WeightsError(RuntimeError):
    """The VGG19 weights cannot be had; the message says what to do instead."""


def resolve_weights(weights: str | os.PathLike | None) -> str:
    """The weights to use: ``weights`` if given, else $NST_VGG19_WEIGHTS,
    else 'imagenet'. 'none' is read as 'random'; paths are made absolute."""
    chosen = os.fspath(weights) if weights is not None else os.environ.get(WEIGHTS_ENV) or "imagenet"
    if chosen.lower() in ("random", "none"):
        return "random"
    if chosen == "imagenet":
        return chosen
    path = Path(chosen).expanduser()
    if not path.is_file():
        source = f" (from ${WEIGHTS_ENV})" if weights is None else ""
        raise WeightsError(
            f"{chosen}{source}: no such weights file. Give 'imagenet', 'random', or the path of a VGG19 "
            f".h5 (Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5) or .npz file."
        )
    if path.suffix.lower() not in (".h5", ".npz"):
        raise WeightsError(f"{chosen}: weights must be a .h5 or .npz file (no pickles are loaded).")
    return str(path.resolve())


def available_layers(weights: str | os.PathLike | None) -> tuple[str, ...]:
    """The VGG19 conv layers that ``weights`` provide: all of them, except for
    an .npz file, which may hold only some (the block 1-3 file)."""
    resolved = resolve_weights(weights)
    if not resolved.lower().endswith(".npz"):
        return VGG19_CONV_LAYERS
    try:
        with np.load(resolved, allow_pickle=False) as arrays:
            held = {key.split("/")[0] for key in arrays.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise WeightsError(f"{resolved}: not a readable .npz weights file ({e}).") from None
    return tuple(layer for layer in VGG19_CONV_LAYERS if layer in held)


def check_weights(weights: str | os.PathLike | None, layers: tuple[str, ...]) -> str:
    """``weights`` resolved, once it is known to cover ``layers``: VGG19 is
    evaluated up to the deepest of them, so an .npz file needs every
    convolution up to there. Raises WeightsError naming the first missing one."""
    resolved = resolve_weights(weights)
    deepest = max(VGG19_CONV_LAYERS.index(layer) for layer in layers)
    held = set(available_layers(resolved))
    missing = [layer for layer in VGG19_CONV_LAYERS[: deepest + 1] if layer not in held]
    if missing:
        raise WeightsError(
            f"{resolved} has no weights for layer {missing[0]}, which the chosen layers need "
            f"(the file holds {', '.join(sorted(held)) or 'no VGG19 layer'}). Choose layers it covers "
            f"(e.g. --preset blocks1-3) or use the full ImageNet weights."
        )
    return resolved
