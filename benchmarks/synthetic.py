"""The synthetic clip that the video tests and benchmarks use: a still photo
with a square patch moving a few pixels per frame, so that the still part
of the picture, where no frame-to-frame change belongs, is known."""

from __future__ import annotations

import numpy as np

from nst.io.images import ImageSource, load_image


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


def pan(photo: ImageSource, frames: int, size: int, dx: int = 4, dy: int = 2) -> list[np.ndarray]:
    """A camera pan over ``photo``: a window of ``size`` px (its width; 3:4)
    moving ``dx`` px right and ``dy`` px down per frame, so that new picture
    comes in at the right and bottom edges."""
    height = size * 3 // 4
    whole = load_image(photo, size + dx * frames + 8)
    assert whole.shape[0] >= height + dy * frames, "the photo is too short for this pan"
    return [whole[dy * t : dy * t + height, dx * t : dx * t + size].copy() for t in range(frames)]


def edge_texture(frame: np.ndarray, band: int = 10) -> tuple[float, float]:
    """How much texture the right and bottom edges keep: the mean change
    between neighbouring pixels in the last ``band`` columns (rows) over
    that in the middle of the frame. 1: as much as the middle."""

    def detail(part: np.ndarray) -> float:
        return float(np.abs(np.diff(part, axis=0)).mean() + np.abs(np.diff(part, axis=1)).mean())

    h, w = frame.shape[:2]
    middle = detail(frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4])
    return detail(frame[:, -band:]) / middle, detail(frame[-band:, :]) / middle
