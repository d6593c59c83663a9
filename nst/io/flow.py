"""Optical flow between video frames, warping, and where the flow can be trusted.

Ruder, Dosovitskiy & Brox, "Artistic style transfer for videos" (GCPR
2016): each frame starts from the previous stylised frame warped onto it,
and a temporal loss holds it to that warped frame wherever the flow is
reliable. This module holds the image side of that (NumPy and OpenCV, no
TensorFlow); `nst.modes.video` runs it and `nst.core.losses.temporal_loss` is the loss.

A flow field is (height, width, 2) floats: at each pixel x of one frame,
the displacement (dx, dy) to where that point is in the other frame.
"""

from __future__ import annotations

import numpy as np

from nst.base.config import FLOW_METHODS
from nst.io.clips import video_library


def _grey(image: np.ndarray) -> np.ndarray:
    """An RGB (or one-channel) image in [0, 1] as 8-bit grey, what OpenCV's flow takes."""
    cv2 = video_library("cv2")

    pixels = np.clip(np.asarray(image, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    return pixels.reshape(pixels.shape[:2])


def optical_flow(source: np.ndarray, target: np.ndarray, method: str = "dis") -> np.ndarray:
    """The flow from ``source`` to ``target`` (same shape, in [0, 1]): at each
    pixel x of ``source``, where its point went in ``target``, as (dx, dy).
    So ``warp(target, optical_flow(source, target))`` looks like ``source``."""
    cv2 = video_library("cv2")

    a, b = _grey(source), _grey(target)
    if method == "dis":
        # The 'medium' preset: a coarse-to-fine search with variational
        # refinement; 'fast' leaves blocky flow on small frames.
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
    if method == "farneback":
        # OpenCV's documented example parameters: pyramid 0.5 x 3 levels,
        # 15 px windows, 3 iterations, 5-neighbourhood polynomials.
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"flow method must be one of {', '.join(FLOW_METHODS)}, got {method!r}")


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at ``x + flow(x)`` for every pixel x (bicubic;
    points outside take the nearest edge pixel): with ``flow`` from frame t
    to frame t-1, frame t-1's image moved onto frame t.

    Bicubic, because each frame of a video is warped from the last, and
    bilinear interpolation at fractional offsets is a low-pass filter that
    compounds: on a stylised frame, 12 warps by a third of a pixel keep 24%
    of its detail (mean neighbour difference) bilinearly and 83% bicubically
    (measured)."""
    cv2 = video_library("cv2")

    h, w = flow.shape[:2]
    x, y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    image = np.asarray(image, np.float32)
    warped = cv2.remap(image, x + flow[..., 0], y + flow[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return warped.reshape(image.shape)


def consistency(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Where the flow into this frame can be trusted (Ruder et al., section
    3.2): (height, width) floats, 1 where it can, 0 at disocclusions and
    motion boundaries.

    ``backward`` is the flow from this frame t to the previous one, and
    ``forward`` the flow from the previous frame to this one. A point that
    is visible in both frames goes back and comes forward to where it
    started: ``forward(x + backward(x)) ≈ -backward(x)``. Where that fails
    by more than the paper's tolerance, ``|w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) +
    0.5``, the point was hidden in the previous frame. Where the backward
    flow changes sharply, ``|∇ŵ_x|² + |∇ŵ_y|² > 0.01 |ŵ|² + 0.002``, it
    crosses a motion boundary, where flow is unreliable. Where it points
    out of the previous frame, the point has just come into view.
    """
    back = np.asarray(backward, np.float32)
    there = warp(forward, back)  # the forward flow at x + backward(x)
    round_trip = np.sum(np.square(there + back), axis=-1)
    disoccluded = round_trip > 0.01 * (np.sum(np.square(there), axis=-1) + np.sum(np.square(back), axis=-1)) + 0.5
    gradient = sum(np.square(g) for c in range(2) for g in np.gradient(back[..., c]))
    boundary = gradient > 0.01 * np.sum(np.square(back), axis=-1) + 0.002
    return (~(disoccluded | boundary | came_into_view(back))).astype(np.float32)


def came_into_view(backward: np.ndarray) -> np.ndarray:
    """(height, width) booleans: where ``backward`` (the flow from this frame
    to the previous one) points out of the previous frame by more than half
    a pixel (flow noise at the edge is not that): what a pan brings in."""
    h, w = backward.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    x, y = x + backward[..., 0], y + backward[..., 1]
    return (x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)
