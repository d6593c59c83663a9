"""Video: stylised frames that do not flicker (``nst video``).

Stylised one by one, the frames of a clip flicker: each converges to its
own local optimum, and a small change in the input moves brush strokes
everywhere. Ruder, Dosovitskiy & Brox ("Artistic style transfer for
videos", GCPR 2016) tie each frame to the last:

1. The first frame is a still run (`nst.stylize`: its ``init`` and
   scales) of ``first_frame_steps`` steps, by default twice
   ``frame_steps``.
2. For each later frame t, the optical flow between input frames t-1 and t,
   both ways (`nst.io.flow`), says where each pixel came from and where that
   can be trusted (c: 0 at disocclusions and motion boundaries). The frame
   starts from the previous output warped onto it, and the temporal loss
   ``temporal_weight * 1/2 sum c (x - w)^2`` (`nst.core.losses.temporal_loss`)
   holds it to that warped image where c = 1, while the content and style
   terms go on as in a still. It runs ``frame_steps`` steps at the output
   size: it starts close to where it ends.
3. Each finished frame is written at once (a PNG that records its settings),
   so a long clip loses nothing to Ctrl-C and ``resume`` starts at the
   first missing frame; the video is assembled from the PNGs at the end,
   with the clip's sound (`nst.io.clips`). Only two input frames and the last
   output are held, so memory does not grow with the clip.

Each frame depends on the last, so a clip's frames run one after another
whatever the device; several devices help only within a frame (tiles, see
`nst.core.tiles`). With ``temporal_weight`` 0 the frames are independent, each
stylised from its own content as a still, and they run as batches, one
frame per replica (`nst.stylize_many`).

The frames and the temporal target reach the optimisers through the same
interface as a still's: a job's `nst.io.jobs.Previous` puts the warped frame
into each scale's scene (the start), and the targets carry it
(`Targets.temporal`), which only the objective reads.
"""

from __future__ import annotations

import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nst.base.config import Config, ConfigError, VideoConfig
from nst.core.device import current as current_device
from nst.io.clips import (
    FRAME_NAME,
    finished_frames,
    frames_folder,
    frames_in,
    open_clip,
    output_kind,
    run_record,
    write_clip,
)
from nst.io.color import match_color
from nst.io.flow import came_into_view, consistency, optical_flow, warp
from nst.io.images import ImageError, ImageSource, load_image, save_image
from nst.io.jobs import Job, Previous, config_for
from nst.run.optimize import stylize_many
from nst.run.record import Progress


@dataclass(frozen=True)
class FrameProgress:
    """What a `stylize_video` callback receives: which frame, and how its run is doing."""

    frame: int
    """The frame (0 is the first)."""
    frames: int
    """How many frames the video will have."""
    progress: Progress | None
    """The frame's run (as `nst.stylize` reports it); ``None`` once the frame is written."""
    path: Path | None = None
    """The frame's PNG, once written."""


@dataclass
class VideoResult:
    """The outcome of `stylize_video`."""

    frames: list[Path]
    """Every frame's PNG, in order (those of an earlier run it resumed too)."""
    output: Path | None
    """The video or GIF written (``None`` for a folder of frames, or when it stopped early)."""
    fps: float
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: 'first_frame', 'frame' (median of the later ones), 'total'."""
    trusted: list[float] = field(default_factory=list)
    """Per later frame, the share of its pixels where the flow was trusted."""
    stopped: str | None = None
    """Why it ended early ('interrupted', or a NaN message), else None."""
    resumed_at: int = 0
    """The first frame this call made (0 unless it resumed)."""


def stylize_video(
    clip: str | os.PathLike,
    style: ImageSource | Sequence[ImageSource],
    output: str | os.PathLike,
    *,
    config: Config | None = None,
    video: VideoConfig | None = None,
    callback: Callable[[FrameProgress], Any] | None = None,
    callback_every: int = 1,
    masks: Sequence[ImageSource] | ImageSource | None = None,
    style_masks: Sequence[ImageSource] | None = None,
    resume: bool = False,
    **overrides: Any,
) -> VideoResult:
    """Render every frame of ``clip`` in the style of ``style``, without flicker.

    Args:
        clip: a video file (.mp4, .webm, ...), an animated GIF or a folder of frames.
        style: one style image or several to blend, as for `nst.stylize`.
        output: a video file (it gets the clip's sound), a .gif, or a folder
            (one PNG per frame). The frames' PNGs are written, as each is
            done, into `frames_folder(output)`.
        config: the settings of each frame's run (default: the 'report'
            preset); its ``scales`` are the first frame's. Steps are the
            video's: ``first_frame_steps`` (default: twice ``frame_steps``)
            and ``frame_steps``; ``steps=`` is refused, as ambiguous.
        video: what video adds (`VideoConfig`: temporal weight, later
            frames' steps, flow, frame rate, frame count).
        callback: called as ``callback(frame_progress)`` during each frame's
            run (every ``callback_every`` steps) and once it is written.
        callback_every: how many steps between calls.
        masks: regions, as for `nst.stylize`; they cover every frame.
        style_masks: the part of each style image to take its style from.
        resume: go on from the frames already in the frames folder (made with
            the same settings); without it, such frames are an error.
        **overrides: any `Config` or `VideoConfig` field.

    Returns:
        A `VideoResult`. Ctrl-C stops after the last finished frame and still
        returns one (the frames written so far stay).
    """
    t0 = time.perf_counter()
    video_fields = set(VideoConfig.__dataclass_fields__)
    video = (video or VideoConfig()).replace(**{k: overrides.pop(k) for k in list(overrides) if k in video_fields})
    if "steps" in overrides:
        raise ConfigError(
            "stylize_video takes first_frame_steps (the first frame's) and frame_steps (each later frame's), not steps"
        )
    config = config_for(config, overrides)
    source = open_clip(clip)
    count = min(source.count, video.frames or source.count)
    fps = video.fps or source.fps
    kind = output_kind(output)
    folder = frames_folder(output)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    record = run_record(clip, styles, config, video)
    done = finished_frames(folder, record, resume)
    first = _first_config(config, video)
    later = config.replace(steps=video.frame_steps, scales=None, scale_steps=None)
    paths = [folder / FRAME_NAME.format(i + 1) for i in range(done)]
    result = VideoResult(paths, None, fps, resumed_at=done)
    times: list[float] = []
    previous: tuple[np.ndarray, np.ndarray] | None = None  # the last input frame and its output
    independent = video.temporal_weight == 0
    replicas = current_device(config.device).spread.num_replicas_in_sync if independent else 1
    frames = enumerate(itertools.islice(source.frames(config.size), video.frames))  # one at a time
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for batch in iter(lambda: list(itertools.islice(frames, replicas)), []):
            if batch[-1][0] < done:  # made by the run this one resumes
                index, frame = batch[-1]
                if index == done - 1 and not independent:
                    previous = (frame, _earlier_output(paths[index], frame.shape))
                continue
            batch = [(i, f) for i, f in batch if i >= done]
            start = time.perf_counter()
            if previous is None:  # the first frame, or independent frames: stills
                jobs = [Job(frame, styles, masks=masks, style_masks=style_masks) for _, frame in batch]
                outputs = _run(jobs, first, batch, count, callback, callback_every)
            else:
                ((index, frame),) = batch
                link, trusted = _link(previous, frame, video)
                result.trusted.append(trusted)
                job = Job(frame, styles, masks=masks, style_masks=style_masks, previous=link)
                outputs = _run([job], later, batch, count, callback, callback_every)
            for (index, frame), out in zip(batch, outputs):
                if out is None or not out.complete:
                    result.stopped = out.stopped if out is not None else "interrupted"
                    return _finish(result, times, t0)
                meta = {**out.metadata(), **record, "frame": index, "frames": count}
                paths.append(save_image(folder / FRAME_NAME.format(index + 1), out.best_image, meta))
                if callback is not None:
                    callback(FrameProgress(index, count, None, paths[-1]))
                if not independent:
                    previous = (frame, out.best_image)
            times.append((time.perf_counter() - start) / len(batch))
        if kind != "folder":
            result.output = write_clip(
                output, (load_image(p) for p in paths), fps, source.source if source.audio else None
            )
    except KeyboardInterrupt:
        result.stopped = "interrupted"
        result.frames = frames_in(folder)  # with one written just as the signal came
    return _finish(result, times, t0)


def _first_config(config: Config, video: VideoConfig) -> Config:
    """The first frame's settings (and every frame's when they are independent)."""
    return config.replace(steps=video.first_steps, scale_steps=None)


def _link(previous: tuple[np.ndarray, np.ndarray], frame: np.ndarray, video: VideoConfig) -> tuple[Previous, float]:
    """Frame ``frame``'s `Previous` from the last input frame and its output;
    the share of pixels where the flow is trusted."""
    last_input, last_output = previous
    forward = optical_flow(last_input, frame, video.flow)
    backward = optical_flow(frame, last_input, video.flow)
    trusted = consistency(forward, backward)
    start = np.clip(warp(last_output, backward), 0, 1)
    new = came_into_view(backward)
    if new.any():
        # What comes into view has no stylised past: its warp repeats the
        # edge pixel, a smear that the frame's steps only partly undo, and
        # the next frame warps what is left, so the edges lose their texture
        # frame after frame (benchmarks/pan.py). It starts as a still does,
        # from the frame's content, in the stylised frame's colours.
        start[new] = np.clip(match_color(frame, last_output), 0, 1)[new]
    return Previous(start, trusted, video.temporal_weight), float(trusted.mean())


def _run(jobs: list[Job], config: Config, batch: list, count: int, callback: Callable | None, every: int) -> list:
    """The runs of a batch of frames (one frame unless they are independent).
    Every frame of one shape reuses one engine's compiled programs
    (`nst.core.engine`), assigning its own start and targets, so a frame costs
    no compilation and memory stays flat."""
    report = None
    if callback is not None:

        def report(p: Progress) -> None:
            callback(FrameProgress(batch[p.job][0], count, p))

    return stylize_many(jobs, config=config, callback=report, callback_every=every)


def _earlier_output(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A frame written by the run being resumed, checked to be the output's size."""
    image = load_image(path)
    if image.shape != shape:
        raise ImageError(
            f"{path}: is {image.shape[1]} x {image.shape[0]}, the frames here {shape[1]} x {shape[0]}; "
            f"resume with the same size, or write to another output"
        )
    return image


def _finish(result: VideoResult, times: list[float], t0: float) -> VideoResult:
    if times and not result.resumed_at:
        result.timings["first_frame"] = times.pop(0)
    if times:
        result.timings["frame"] = statistics.median(times)
    result.timings["total"] = time.perf_counter() - t0
    return result
