"""The synthetic clip that the video tests and benchmarks use: a still photo
with a square patch moving a few pixels per frame, so that the still part
of the picture, where no frame-to-frame change belongs, is known."""

from __future__ import annotations

import numpy as np

from nst.images import ImageSource, load_image


def moving_patch(photo: ImageSource, patch: ImageSource, frames: int, size: int, step: int = 3) -> list[np.ndarray]:
    """``photo`` at ``size`` px with ``patch`` (a square a sixth of the width,
    a side away from the top left corner) moving ``step`` px to the right
    per frame; the rest of the picture is still."""
    photo = load_image(photo, size)
    side = size // 6
    square = load_image(load_image(patch)[: side * 2, : side * 2], side)[:side, :side]
    clip = []
    for t in range(frames):
        frame = photo.copy()
        frame[side : 2 * side, side + step * t : 2 * side + step * t] = square
        clip.append(frame)
    return clip


def still_region(shape: tuple[int, ...], size: int, frames: int, step: int = 3) -> np.ndarray:
    """The pixels of `moving_patch`'s clip that the patch never comes near
    (8 px or more from its path)."""
    side = size // 6
    still = np.ones(shape[:2], bool)
    still[max(0, side - 8) : 2 * side + 8, max(0, side - 8) : 2 * side + step * frames + 8] = False
    return still


def frame_change(frames: np.ndarray, where: np.ndarray) -> float:
    """The mean absolute change from one frame to the next over the pixels ``where``."""
    return float(np.abs(np.diff(frames, axis=0))[:, where].mean())
