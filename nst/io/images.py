"""Images in and out: load from a path, URL, PIL image or array; save PNGs
that record how they were made; the sample images.

Everything here works on NumPy arrays of shape (height, width, 3), float32,
RGB in [0, 1], and imports no TensorFlow, so bad inputs are reported before
TensorFlow loads.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps, PngImagePlugin

from nst import __version__
from nst.base.cache import cache_dir
from nst.base.config import MAX_PIXELS

ImageSource = str | os.PathLike | Image.Image | np.ndarray

#: Key of the PNG text chunk that holds the settings of a run, as JSON.
METADATA_KEY = "nst"
URL_TIMEOUT_S = 30

SAMPLE_BASE_URL = "https://raw.githubusercontent.com/jcjohnson/neural-style/master/examples/inputs/"
#: Sample images: file name, what it is, licence. Found in $NST_IMAGES if set,
#: else downloaded once from SAMPLE_BASE_URL into the cache; never made up
#: unless asked for (`SYNTHETIC`).
SAMPLES: dict[str, tuple[str, str, str]] = {
    "tubingen": ("tubingen.jpg", "Neckarfront, Tübingen (photo by Andreas Praefcke)", "CC BY 3.0"),
    "starry_night": ("starry_night.jpg", "Vincent van Gogh, The Starry Night, 1889", "public domain"),
    "the_scream": ("the_scream.jpg", "Edvard Munch, The Scream, 1893", "public domain"),
    "shipwreck": ("shipwreck.jpg", "J. M. W. Turner, The Shipwreck of the Minotaur, c. 1810", "public domain"),
    "woman_with_hat": ("woman-with-hat-matisse.jpg", "Henri Matisse, Woman with a Hat, 1905", "public domain"),
}
SAMPLE_PREFIX = "sample:"
#: $NST_IMAGES set to this asks for drawn stand-ins of the samples.
SYNTHETIC = "synthetic"
#: An address rather than a path: https://..., s3://..., gs://... (`download`).
ADDRESS = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+://")
#: What a failed download of a URL the user gave says to do.
_DOWNLOAD_ADVICE = "Check the address or download it and give the file."


class ImageError(ValueError):
    """An input image cannot be used; the message names it and says what to do."""


def load_image(source: ImageSource, size: int | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Load an image as float32 RGB in [0, 1], shape (height, width, 3).

    ``source`` is a file path, a URL (http(s), or s3://, gs://, ... with
    fsspec; downloaded once and cached), a sample name written
    ``"sample:tubingen"`` (see `SAMPLES`), a PIL image, or an array
    (height, width[, channels]) of uint8, uint16 or floats in [0, 1].
    EXIF orientation is applied; grey, palette, CMYK and 16-bit images become
    RGB; transparency is composited on white. With ``size``, the longest side
    is resized to ``size`` pixels. Files of more than ``max_pixels`` pixels
    are refused before they are decoded.
    """
    if isinstance(source, np.ndarray):
        image = _array_to_rgb(source)
        if size is None or max(image.shape[:2]) == size:
            return image  # already the right size: no 8-bit round trip
        return to_array(resize(to_pil(image), size))
    pil = source if isinstance(source, Image.Image) else open_image(source, max_pixels)
    pil = _to_rgb(pil)
    return to_array(pil if size is None else resize(pil, size))


def require_side(image: np.ndarray, min_side: int, source: ImageSource) -> np.ndarray:
    """``image`` if its shorter side is at least ``min_side`` pixels (what the
    chosen VGG19 layers need), else an ImageError that says so."""
    short = min(image.shape[:2])
    if short < min_side:
        raise ImageError(
            f"{source_name(source)}: at {max(image.shape[:2])} px its short side is {short} px, but the chosen layers "
            f"need at least {min_side} px (each VGG19 block halves it). Raise size=, use shallower layers, or crop "
            f"the image to a less elongated shape."
        )
    return image


def source_name(source: ImageSource) -> str:
    """A path, URL or sample name as given, else the kind of object."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__}>"


def open_image(source: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open a path, URL or sample name as a decoded PIL image (EXIF-rotated),
    refusing more than ``max_pixels`` pixels before decoding them."""
    text = os.fspath(source)
    if text.startswith(SAMPLE_PREFIX):
        path = sample_path(text[len(SAMPLE_PREFIX) :])
    elif ADDRESS.match(text):
        path = download(text)
    else:
        path = Path(text)
    check_readable(path)
    try:
        with _no_pixel_limit(), Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"{path}: {im.width} x {im.height} = {im.width * im.height:,} pixels is over the limit of "
                    f"{max_pixels:,} (a guard against decompression bombs). If you trust the file, raise it "
                    f"with max_pixels=."
                )
            im.load()
            return ImageOps.exif_transpose(im)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image. Give a smaller image.") from None
    except Exception as e:  # Pillow's decoders raise many kinds (OSError, SyntaxError, struct.error, ...)
        raise ImageError(
            f"{path}: not a readable image ({reason(e)}). Give a PNG, JPEG or other raster image."
        ) from None


@contextlib.contextmanager
def _no_pixel_limit() -> Iterator[None]:
    """Turn off Pillow's own decompression-bomb check, which raises at twice
    its default limit before the caller can say anything useful: the caller
    compares the size with its own limit before decoding."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def reason(e: BaseException) -> str:
    """An exception as a short phrase for a one-line error: the first line
    of its message, else the name of its class."""
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def check_source(source: ImageSource) -> None:
    """Raise ImageError now if ``source`` names a local file that is not
    there or not readable (URLs, samples and in-memory images pass)."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if not (text.startswith(SAMPLE_PREFIX) or ADDRESS.match(text)):
            check_readable(Path(text))


def check_readable(path: Path) -> None:
    """Raise ImageError unless ``path`` is an existing, non-empty, readable file."""
    if not path.exists():
        raise ImageError(f"{path}: no such file. Check the path.")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty.")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path}: permission denied. Make the file readable.")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; 16-bit and float greys keep their full range."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = np.asarray(im, dtype=np.float32)
        grey = grey / 65535.0 if im.mode != "F" else grey
        return to_pil(np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1))
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """An array of any common dtype and channel count to float32 RGB in [0, 1]."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ImageError(f"an image array must be (height, width[, 1|3|4]), got shape {array.shape}")
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    else:
        a = a.astype(np.float32)
        if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 1:
            raise ImageError("a float image array must hold finite values in [0, 1]")
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:] + (1.0 - a[..., 3:])
    elif a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a, dtype=np.float32)


def resize(im: Image.Image, size: int) -> Image.Image:
    """Resize so the longest side is ``size`` pixels (Lanczos; aspect kept)."""
    scale = size / max(im.size)
    shape = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im if shape == im.size else im.resize(shape, Image.Resampling.LANCZOS)


def to_array(im: Image.Image) -> np.ndarray:
    """8-bit RGB PIL image to float32 array in [0, 1]."""
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def to_pil(image: np.ndarray) -> Image.Image:
    """Float array in [0, 1], (height, width, 3), to an 8-bit RGB PIL image."""
    return Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8), "RGB")


def save_image(path: str | os.PathLike, image: np.ndarray, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``image`` as a PNG whose text chunk ``nst`` holds ``metadata`` (JSON).

    The file is written to a temporary name and renamed, so a crash never
    leaves a half-written PNG. Returns the path written.
    """
    path = Path(path)
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", f"nst {__version__}")
    info.add_text(METADATA_KEY, json.dumps({"nst_version": __version__, **(metadata or {})}, sort_keys=True))
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG", pnginfo=info)
    write_atomic(path, buffer.getvalue())
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it into place.
    The file gets the usual permissions (the umask applies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output(path: str | os.PathLike, inputs: dict[str, list[ImageSource]], *, force: bool = False) -> Path:
    """Where to write ``path``, known before any work is done: never over one
    of ``inputs`` (role -> sources, e.g. ``{"content": [...]}``), which is
    refused, or with ``force`` written beside it (the first free
    ``STEM-2.png``...); into a folder that exists (made if need be) and takes
    a file. Raises ImageError naming the path and the fix."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a folder; give a file name, e.g. {path / 'out.png'}.")
    for role, sources in inputs.items():
        clash = next((s for s in sources if _same_file(path, s)), None)
        if clash is not None and not force:
            raise ImageError(
                f"{path}: is the {role} image, and nst never overwrites an input. Choose another output "
                f"(-o), or add --force to write {free_path(path).name} beside it."
            )
        if clash is not None:
            path = free_path(path)
    _check_folder(path.parent)
    return path


def _same_file(path: Path, source: ImageSource) -> bool:
    if not isinstance(source, (str, os.PathLike)) or not path.exists():
        return False
    try:
        return os.path.samefile(path, source)
    except (OSError, ValueError):  # a sample name, a URL, a missing file
        return False


def _check_folder(folder: Path) -> None:
    """Make ``folder`` if need be and check that a file can be created in it
    (by creating one: permissions, read-only disks and quotas all show)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".nst-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as e:
        raise ImageError(
            f"{folder}: cannot write there ({e.strerror or reason(e)}). Choose another output path."
        ) from None


def free_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing is there, else the first free ``STEM-2.SUFFIX``,
    ``STEM-3.SUFFIX``, ...: a way to write without overwriting anything."""
    path = Path(path)
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def store_upload(name: str, data: bytes) -> tuple[Path, str]:
    """Keep an uploaded file in the cache under its SHA-256, so that a run can
    name it as a path (and its PNG records where it came from); returns the
    path and the hash. Refuses what Pillow cannot open, naming ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception:  # Pillow raises many kinds for non-images
        raise ImageError(f"{name}: cannot read this image; upload a PNG, JPEG or WebP") from None
    digest = hashlib.sha256(data).hexdigest()
    suffix = Path(name).suffix.lower()
    target = cache_dir() / "uploads" / f"{digest[:16]}{suffix if re.fullmatch(r'[.][a-z0-9]{1,5}', suffix) else ''}"
    if not target.exists():
        write_atomic(target, data)
    return target, digest


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The settings recorded in a PNG written by `save_image` ({} if none).
    A file that cannot be read, or whose record is not a JSON object (damaged,
    or written by something else), raises ImageError."""
    try:
        with _no_pixel_limit(), Image.open(path) as im:
            text = im.info.get(METADATA_KEY)
    except Exception as e:  # as in `open_image`: Pillow raises many kinds
        raise ImageError(f"{os.fspath(path)}: not a readable image ({reason(e)}).") from None
    if text is None:
        return {}
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as e:
        meta = e
    if not isinstance(meta, dict):
        raise ImageError(
            f"{os.fspath(path)}: its {METADATA_KEY!r} record is damaged or was not written by nst "
            f"({reason(meta) if isinstance(meta, BaseException) else 'not a JSON object'})."
        )
    return meta


def download(url: str) -> Path:
    """Fetch ``url`` into the cache once; later calls return the cached file.
    http(s), file and ftp with the standard library; any other scheme
    (``s3://``, ``gs://``, ``memory://``, ...) through fsspec, if installed."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.rsplit("/", 1)[-1].split("?")[0])[-80:] or "download"
    target = cache_dir() / "downloads" / f"{hashlib.sha256(url.encode()).hexdigest()[:12]}-{name}"
    if target.exists():
        return target
    try:
        if (scheme := url.split("://", 1)[0].lower()) in ("http", "https", "file", "ftp"):
            with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
                data = response.read()
        else:
            import fsspec

            with fsspec.open(url, "rb") as f:
                data = f.read()
    except ImportError as e:  # fsspec, or the scheme's own package (s3fs, gcsfs): fsspec's message names it
        advice = "pip install fsspec (with s3fs for s3://, gcsfs for gs://)" if "fsspec" in str(e) else e
        raise ImageError(f"{url}: reading {scheme}:// addresses needs fsspec: {advice}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ImageError(f"{url}: download failed ({e}). {_DOWNLOAD_ADVICE}") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
    except Exception:  # Pillow raises many kinds for non-images
        raise ImageError(f"{url}: the server did not send an image ({len(data)} bytes). Check the address.") from None
    write_atomic(target, data)
    return target


def sample_path(name: str) -> Path:
    """Path of sample image ``name``: from $NST_IMAGES, the cache or a
    download; or, when $NST_IMAGES is ``synthetic``, a stand-in drawn here
    (a town on a river, swirling strokes) for machines that have neither."""
    if name not in SAMPLES:
        raise ImageError(f"unknown sample {name!r}; samples: {', '.join(SAMPLES)}")
    filename = SAMPLES[name][0]
    folder = os.environ.get("NST_IMAGES")
    if folder == SYNTHETIC:
        stand_in = cache_dir() / "synthetic" / f"{name}.png"
        if not stand_in.exists():
            save_image(stand_in, _synthetic(name), {"synthetic_sample": name})
        return stand_in
    if folder and (Path(folder) / filename).is_file():
        return Path(folder) / filename
    try:
        return download(SAMPLE_BASE_URL + filename)
    except ImageError as e:
        missing = "" if not folder or Path(folder).is_dir() else ": no such folder"
        where = f"is not in $NST_IMAGES ({folder}{missing}) and " if folder else ""
        failed = str(e).removesuffix(f" {_DOWNLOAD_ADVICE}")  # the address and why; a sample's advice follows
        raise ImageError(
            f"sample:{name} {where}could not be fetched: {failed} Set NST_IMAGES to a folder that holds "
            f"{filename} (an absolute path), or NST_IMAGES={SYNTHETIC} for drawn stand-ins (plumbing only)."
        ) from None


def _synthetic(name: str, width: int = 512, height: int = 384) -> np.ndarray:
    """A drawn stand-in for a sample: a town on a river for photos, swirling
    brush strokes for paintings. Deterministic."""
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if name == "tubingen":
        sky = np.stack([0.55 + 0.3 * y / height, 0.7 + 0.2 * y / height, np.full_like(y, 0.95)], -1)
        im = to_pil(sky)
        draw = ImageDraw.Draw(im)
        for i in range(14):  # houses along the bank, with roofs and windows
            x0 = i * width // 14 + int(rng.integers(-6, 6))
            top = int(height * 0.35 + rng.integers(0, 60))
            wall = tuple(int(c) for c in rng.integers(150, 245, 3))
            draw.rectangle([x0, top, x0 + width // 14, int(height * 0.68)], fill=wall, outline=(60, 50, 40))
            draw.polygon([(x0, top), (x0 + width // 28, top - 30), (x0 + width // 14, top)], fill=(150, 60, 40))
            for wy in range(top + 10, int(height * 0.65), 18):
                draw.rectangle([x0 + 8, wy, x0 + 14, wy + 8], fill=(50, 50, 70))
        draw.rectangle([0, int(height * 0.68), width, height], fill=(60, 90, 110))  # river
        return to_array(im.filter(ImageFilter.GaussianBlur(0.8)))
    swirl = np.sin(x / 23 + 3 * np.sin(y / 41)) + np.cos(y / 19 + 2 * np.cos(x / 37))
    palette = rng.uniform(0.1, 0.95, (2, 3)).astype(np.float32)
    t = (swirl[..., None] + 2) / 4
    image = palette[0] * (1 - t) + palette[1] * t
    im = to_pil(image)
    draw = ImageDraw.Draw(im)
    for _ in range(600):  # short strokes following the swirl
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        angle = swirl[int(cy) % height, int(cx) % width] * 1.5
        dx, dy = 9 * np.cos(angle), 9 * np.sin(angle)
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=color, width=3)
    return to_array(im)
