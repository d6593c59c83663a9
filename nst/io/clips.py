"""Video clips in and out: video files, animated GIFs and folders of frames.

Video files are decoded and encoded by ffmpeg through ``imageio-ffmpeg``,
whose wheel ships an ffmpeg binary (no system install; Colab has one
anyway): frames stream through a pipe, so a clip is never held in memory
whole. GIFs are read and written with Pillow, folders of frames with
`nst.io.images`. Like `nst.io.images`, nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageSequence

from nst.io.images import (
    ImageError,
    ImageSource,
    check_readable,
    load_image,
    read_metadata,
    reason,
    source_name,
    to_array,
    to_pil,
    write_atomic,
)

#: Files read and written through ffmpeg.
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
#: Image files taken as frames from a folder, in name order.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: A folder of frames has no frame rate of its own.
FOLDER_FPS = 10.0
#: Each stylised frame's PNG in the frames folder, numbered from 1.
FRAME_NAME = "frame-{:05d}.png"
#: Encoders per output kind (H.264 plays everywhere; VP9 in WebM) and the audio codec each container takes.
CODECS = {".webm": ("libvpx-vp9", "libopus")}
DEFAULT_CODECS = ("libx264", "aac")


#: What video needs beyond a still, by module: the package, and what it does here.
VIDEO_LIBRARIES = {
    "imageio_ffmpeg": ("imageio-ffmpeg", "reading and writing video files"),
    "cv2": ("opencv-python-headless", "optical flow between frames"),
}


def video_library(module: str) -> Any:
    """The module ``module`` of `VIDEO_LIBRARIES`, or an error that says how
    to install it (they come with ``pip install 'nst[video]'``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package, purpose = VIDEO_LIBRARIES[module]
        raise ModuleNotFoundError(
            f"{purpose} needs {package}: pip install 'nst[video]' (or pip install {package})"
        ) from None


def ffmpeg() -> str:
    """The path of the ffmpeg program that ``imageio-ffmpeg`` ships (or a system one)."""
    imageio_ffmpeg = video_library("imageio_ffmpeg")

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass(frozen=True)
class Clip:
    """A clip to stylise: where it is, its frame rate, its number of frames
    and whether it has an audio track to carry over."""

    source: Path
    fps: float
    count: int
    audio: bool

    @property
    def kind(self) -> str:
        """'folder', 'gif' or 'video'."""
        if self.source.is_dir():
            return "folder"
        return "gif" if self.source.suffix.lower() == ".gif" else "video"

    def frames(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The frames in order as RGB floats in [0, 1], the longest side
        resized to ``size``; one at a time (memory does not grow with the clip)."""
        if self.kind == "folder":
            for path in frame_files(self.source):
                yield load_image(path, size)
        elif self.kind == "gif":
            with Image.open(self.source) as gif:
                for frame in ImageSequence.Iterator(gif):
                    yield load_image(frame.convert("RGB"), size)
        else:
            imageio_ffmpeg = video_library("imageio_ffmpeg")

            reader = imageio_ffmpeg.read_frames(str(self.source))
            try:
                width, height = next(reader)["size"]
                for data in reader:
                    yield load_image(np.frombuffer(data, np.uint8).reshape(height, width, 3), size)
            finally:
                reader.close()  # stops ffmpeg when the caller stops early


def frame_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` in natural order (frame2 before frame10)."""
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural)


def _natural(path: Path) -> list:
    """Sort key: the name's runs of digits compared as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def open_clip(source: str | os.PathLike) -> Clip:
    """A `Clip` for a video file, an animated GIF or a folder of frames, or
    an ImageError that names it and says what to give instead. (A video's
    frames are counted by decoding it: ffmpeg's estimate can be off.)"""
    path = Path(source)
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise ImageError(f"{path}: a folder of frames needs image files ({', '.join(FRAME_SUFFIXES)}); it has none")
        return Clip(path, FOLDER_FPS, len(files), False)
    check_readable(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        try:
            with Image.open(path) as gif:
                count = getattr(gif, "n_frames", 1)
                duration = gif.info.get("duration") or 100
        except (OSError, ValueError) as e:
            raise ImageError(f"{path}: not a readable GIF ({reason(e)})") from None
        return Clip(path, 1000.0 / duration, count, False)
    if suffix not in VIDEO_SUFFIXES:
        raise ImageError(
            f"{path}: not a clip; give a video ({', '.join(VIDEO_SUFFIXES)}), a .gif or a folder of frames"
        )
    imageio_ffmpeg = video_library("imageio_ffmpeg")

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        count = imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    except (OSError, RuntimeError, StopIteration) as e:
        raise ImageError(f"{path}: ffmpeg cannot read it as a video ({' '.join(reason(e).split())[:300]})") from None
    if not count:
        raise ImageError(f"{path}: the video has no frames")
    return Clip(path, float(meta.get("fps") or FOLDER_FPS), count, bool(meta.get("audio_codec")))


def output_kind(path: str | os.PathLike) -> str:
    """What an output path asks for: 'video' (.mp4, .webm, ...), 'gif', or
    'folder' (a folder, or a name without a suffix: one PNG per frame)."""
    suffix = Path(path).suffix.lower()
    if Path(path).is_dir():
        return "folder"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix == ".gif":
        return "gif"
    if not suffix:
        return "folder"
    raise ImageError(
        f"{path}: write a video ({', '.join(VIDEO_SUFFIXES)}), a .gif, or a folder (a name without a suffix)"
    )


def write_clip(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float, audio: Path | None = None) -> Path:
    """Write ``frames`` (RGB in [0, 1], all one size) as a video or a GIF;
    a video gets ``audio``'s sound track, cut to the frames' length. The
    file appears whole or not at all. Returns the path written."""
    path = Path(path)
    if output_kind(path) == "gif":
        pictures = [to_pil(f) for f in frames]
        if not pictures:
            raise ImageError(f"{path}: no frames to write")
        buffer = io.BytesIO()
        pictures[0].save(
            buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0
        )
        write_atomic(path, buffer.getvalue())
        return path
    imageio_ffmpeg = video_library("imageio_ffmpeg")

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    codec, audio_codec = CODECS.get(path.suffix.lower(), DEFAULT_CODECS)
    writer = None
    try:
        for frame in frames:
            picture = np.ascontiguousarray(np.asarray(to_pil(frame)))
            if writer is None:
                height, width = picture.shape[:2]
                # yuv420p (what players expect) needs even sides: pad by one pixel where odd.
                writer = imageio_ffmpeg.write_frames(
                    str(tmp),
                    (width, height),
                    fps=fps,
                    codec=codec,
                    macro_block_size=1,
                    ffmpeg_log_level="error",
                    output_params=["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", *(["-shortest"] if audio else [])],
                    audio_path=str(audio) if audio else None,
                    audio_codec=audio_codec if audio else None,
                )
                writer.send(None)
            writer.send(picture)
        if writer is None:
            raise ImageError(f"{path}: no frames to write")
        writer.close()
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        raise ImageError(f"{path}: ffmpeg could not write it ({' '.join(reason(e).split())[:300]})") from None
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        tmp.unlink(missing_ok=True)  # gone already when it was renamed into place
    return path


def save_animation(path: str | os.PathLike, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write the frames of one run (``nst --animate``: images in [0, 1]) as
    a GIF or a video; frames of a coarse-to-fine run are scaled up to the
    size of the last one. Returns the path written."""
    path = Path(path)
    if path.suffix.lower() not in (".gif", *VIDEO_SUFFIXES):
        raise ImageError(f"{path}: an animation is a .gif or a video file ({', '.join(VIDEO_SUFFIXES)})")
    if not frames:
        raise ImageError(f"{path}: no frames to animate")
    size = to_pil(frames[-1]).size
    return write_clip(path, (to_array(to_pil(f).resize(size, Image.Resampling.LANCZOS)) for f in frames), fps)


def frames_folder(output: str | os.PathLike) -> Path:
    """Where a video run writes its frames' PNGs: the output itself when it
    is a folder, else a folder beside it (``out.mp4`` -> ``out-frames``)."""
    output = Path(output)
    return output if output_kind(output) == "folder" else output.with_name(f"{output.stem}-frames")


def run_record(clip: str | os.PathLike, styles: list[ImageSource], config: Any, video: Any) -> dict[str, Any]:
    """What every frame of a video run records of the run (a `Config` and a
    `VideoConfig`), so that resuming can check it goes on with the same one."""
    return {
        "clip": source_name(clip),
        "styles": [source_name(s) for s in styles],
        "settings": config.to_dict(),
        "video": {k: v for k, v in video.to_dict().items() if k != "frames"},
    }


def frames_in(folder: Path) -> list[Path]:
    """The frames' PNGs in ``folder``, from the first up to the first missing one."""
    paths = []
    while (folder / FRAME_NAME.format(len(paths) + 1)).is_file():
        paths.append(folder / FRAME_NAME.format(len(paths) + 1))
    return paths


def finished_frames(folder: Path, record: dict[str, Any], resume: bool) -> int:
    """How many frames an earlier run left in ``folder`` (0 if none): with
    ``resume``, frames of the same `run_record`, numbered from the first
    without a gap; without it, any frame there is an error (it would be
    overwritten)."""
    existing = sorted(folder.glob("frame-*.png")) if folder.is_dir() else []
    if not existing:
        return 0
    if not resume:
        raise ImageError(
            f"{folder}: holds {len(existing)} frames of an earlier run; go on from them with "
            f"--resume (the same clip, styles and settings), or write to another output"
        )
    done = len(frames_in(folder))
    if done:
        last = folder / FRAME_NAME.format(done)
        meta = read_metadata(last)
        differ = [key for key in record if meta.get(key) != record[key]]
        if differ:
            raise ImageError(
                f"{last}: made with another {', '.join(differ)}; resume with the same clip, styles "
                f"and settings, or write to another output"
            )
    return done
