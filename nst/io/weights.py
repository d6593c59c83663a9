"""Where VGG19's weights come from, checked before TensorFlow loads.

``weights`` is 'imagenet' (Keras downloads and caches them), 'random'
(plumbing and timing only), or the path of a Keras ``.h5`` file or an
``.npz`` of ``<layer>/kernel`` and ``<layer>/bias`` arrays (never pickles).
Unset, it is the file named by ``$NST_VGG19_WEIGHTS``, else the file that
``nst weights install PATH`` put into nst's cache (`install`: what an
offline machine needs once), else 'imagenet'. Nothing here imports
TensorFlow, so the command line can refuse a missing file, or one without
the layers a run needs, at once.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

from nst.base.cache import cache_dir
from nst.base.geometry import VGG19_CONV_LAYERS, channels
from nst.io.images import reason

WEIGHTS_ENV = "NST_VGG19_WEIGHTS"


class WeightsError(RuntimeError):
    """The VGG19 weights cannot be had; the message says what to do instead."""


def installed_dir() -> Path:
    """The folder `install` puts a weights file into: ``$NST_CACHE/weights``."""
    return cache_dir() / "weights"


def installed() -> Path | None:
    """The weights file `install` put into nst's cache, if any."""
    folder = installed_dir()
    found = sorted(folder.glob("*.npz")) + sorted(folder.glob("*.h5")) if folder.is_dir() else []
    return found[0] if found else None


def install(path: str | os.PathLike, *, link: bool = False) -> Path:
    """Copy (or, with ``link``, symlink) the VGG19 weights file ``path`` into
    nst's cache, replacing one installed before, once it is checked as a run
    would check it (every layer it holds, VGG19's shapes, finite values).
    Later runs then use it whenever no weights are named and
    $NST_VGG19_WEIGHTS is unset. Returns where it now is."""
    source = Path(resolve_weights(os.fspath(path)))  # exists, .h5 or .npz, absolute
    if source.suffix.lower() == ".npz":
        check_weights(source, available_layers(source) or VGG19_CONV_LAYERS[:1])
    else:
        check_weights(source, VGG19_CONV_LAYERS)
    folder = installed_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    partial = folder / f".{source.name}.partial"
    partial.unlink(missing_ok=True)
    if link:
        partial.symlink_to(source)
    else:
        shutil.copyfile(source, partial)
    for old in folder.iterdir():
        if (old.is_file() or old.is_symlink()) and old.suffix.lower() in (".npz", ".h5") and old.name != source.name:
            old.unlink()
    partial.replace(target)
    return target


def resolve_weights(weights: str | os.PathLike | None) -> str:
    """The weights to use: ``weights`` if given, else $NST_VGG19_WEIGHTS,
    else the installed file (`install`), else 'imagenet'. 'none' is read as
    'random'; paths are made absolute."""
    if weights is not None:
        chosen = os.fspath(weights)
    else:
        chosen = os.environ.get(WEIGHTS_ENV) or os.fspath(installed() or "imagenet")
    if chosen.lower() in ("random", "none"):
        return "random"
    if chosen == "imagenet":
        return chosen
    path = Path(chosen).expanduser()
    if not path.is_file():
        source = ""
        if weights is None:
            gone = " (the file `nst weights install --link` linked to is gone: install one again)"
            source = f" (from ${WEIGHTS_ENV})" if os.environ.get(WEIGHTS_ENV) else gone
        raise WeightsError(
            f"{chosen}{source}: no such weights file. Give 'imagenet', 'random', or the path of a VGG19 "
            f".h5 (Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5) or .npz file."
        )
    if path.suffix.lower() not in (".h5", ".npz"):
        raise WeightsError(f"{chosen}: weights must be a .h5 or .npz file (no pickles are loaded).")
    return str(path.resolve())


def vgg19_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each VGG19 convolution's kernel and bias shapes (3 x 3 x in x out, out)."""
    shapes, previous = {}, 3
    for layer in VGG19_CONV_LAYERS:
        out = channels(layer)
        shapes[layer] = ((3, 3, previous, out), (out,))
        previous = out
    return shapes


def available_layers(weights: str | os.PathLike | None) -> tuple[str, ...]:
    """The VGG19 conv layers that ``weights`` provide, as far as the file's
    table of contents tells: all of them, except for an .npz file, which may
    hold only some (the block 1-3 file). `check_weights` looks inside."""
    resolved = resolve_weights(weights)
    if not resolved.lower().endswith(".npz"):
        return VGG19_CONV_LAYERS
    held = {key.split("/")[0] for key in _npz_headers(resolved)}
    return tuple(layer for layer in VGG19_CONV_LAYERS if layer in held)


def describe_weights(weights: str | os.PathLike | None) -> str:
    """The weights in words for a caption: 'VGG19, ImageNet weights',
    'random weights', or the file's name, with 'VGG19, 8-bit weights' where
    its values are quantised to 256 levels per tensor."""
    resolved = resolve_weights(weights)
    if resolved in ("imagenet", "random"):
        return "VGG19, ImageNet weights" if resolved == "imagenet" else "random weights"
    name = Path(resolved).name
    if resolved.lower().endswith(".npz") and "block1_conv1" in available_layers(resolved):
        with np.load(resolved, allow_pickle=False) as arrays:
            if np.unique(arrays["block1_conv1/kernel"]).size <= 256:
                return f"VGG19, 8-bit weights ({name})"
    return f"VGG19, weights {name}"


def check_weights(weights: str | os.PathLike | None, layers: tuple[str, ...]) -> str:
    """``weights`` resolved, once it is known to hold what ``layers`` need.

    VGG19 is evaluated up to the deepest of ``layers``, so a file needs every
    convolution up to there, each kernel and bias of VGG19's shape, in
    floating point (never pickled objects), with finite values. Raises
    WeightsError naming the file, the first problem and what to do.
    """
    resolved = resolve_weights(weights)
    deepest = max(VGG19_CONV_LAYERS.index(layer) for layer in layers)
    needed = VGG19_CONV_LAYERS[: deepest + 1]
    if resolved.lower().endswith(".npz"):
        _check_npz(resolved, needed)
    elif resolved.lower().endswith(".h5"):
        _check_h5(resolved, needed)
    return resolved


def _npz_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array's shape and dtype in an .npz file, read from the .npy
    headers alone (nothing is decompressed beyond them, nothing unpickled)."""
    try:
        headers = {}
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as member:
                    version = np.lib.format.read_magic(member)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(member)
                headers[name.removesuffix(".npy")] = (shape, dtype)
        return headers
    except Exception as e:  # zipfile, zlib and numpy raise many kinds for a damaged file
        raise WeightsError(f"{path}: not a readable .npz weights file ({reason(e)}). {_FIX}") from None


def _check_npz(path: str, needed: tuple[str, ...]) -> None:
    headers = _npz_headers(path)
    held = sorted(
        {key.split("/")[0] for key in headers if key.split("/")[0] in VGG19_CONV_LAYERS}, key=VGG19_CONV_LAYERS.index
    )
    shapes = vgg19_shapes()
    for layer in needed:
        if layer not in held:
            raise WeightsError(
                f"{path} has no weights for layer {layer}, which the chosen layers need (the file holds "
                f"{', '.join(held) or 'no VGG19 layer'}). Choose layers it covers (e.g. preset=blocks1-3) "
                f"or use the full ImageNet weights."
            )
        for part, shape in zip(("kernel", "bias"), shapes[layer]):
            key = f"{layer}/{part}"
            if key not in headers:
                raise WeightsError(f"{path}: {layer} has no {part} (no array {key!r}). {_FIX}")
            found, dtype = headers[key]
            if dtype.hasobject:
                raise WeightsError(f"{path}: {key} holds pickled Python objects, which nst never loads. {_FIX}")
            if dtype.kind != "f":
                raise WeightsError(f"{path}: {key} holds {dtype} values, not floating point. {_FIX}")
            if tuple(found) != shape:
                raise WeightsError(f"{path}: {key} has shape {tuple(found)}; VGG19's is {shape}. {_FIX}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            for layer in needed:
                for part in ("kernel", "bias"):
                    if not np.all(np.isfinite(arrays[f"{layer}/{part}"])):
                        raise WeightsError(f"{path}: {layer}/{part} holds NaN or infinite values. {_FIX}")
    except WeightsError:
        raise
    except Exception as e:  # a member that is damaged past its header
        raise WeightsError(f"{path}: not a readable .npz weights file ({reason(e)}). {_FIX}") from None


def _check_h5(path: str, needed: tuple[str, ...]) -> None:
    """A Keras weights file names layers in its own ways (by layer in the
    file Keras downloads, conv2d_N in Keras 3's .weights.h5): check that it
    holds a kernel and bias of each needed shape, finite. Keras itself then
    matches them to layers when it loads the file."""
    try:
        import h5py  # comes with Keras
    except ImportError:
        return  # then TensorFlow is missing too, and says so
    arrays: list[np.ndarray] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda _, item: arrays.append(item[()]) if isinstance(item, h5py.Dataset) else None)
    except Exception as e:  # h5py raises OSError, KeyError, ValueError... for damaged files
        raise WeightsError(f"{path}: not a readable .h5 weights file ({reason(e)}). {_FIX}") from None
    held = Counter(a.shape for a in arrays if a.dtype.kind == "f")
    if any(a.dtype.kind == "f" and not np.all(np.isfinite(a)) for a in arrays):
        raise WeightsError(f"{path}: holds NaN or infinite values. {_FIX}")
    want = Counter(shape for layer in needed for shape in vgg19_shapes()[layer])
    short = sorted((shape for shape, n in want.items() if held[shape] < n), key=len, reverse=True)  # kernels first
    if short:
        raise WeightsError(f"{path}: holds no VGG19 weights of shape {short[0]} (not a VGG19 weights file?). {_FIX}")


_FIX = (
    "Give a VGG19 weights file (Keras' vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, or an .npz of "
    "<layer>/kernel and <layer>/bias arrays), 'imagenet' or 'random'."
)
