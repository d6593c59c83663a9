"""Colour preservation (Gatys et al. 2017, "Controlling Perceptual Factors in
Neural Style Transfer", section 5): two ways to keep the content's colours.

- Luminance-only transfer: the style is transferred between luminance
  images (the Y of YIQ), and the output's Y is recombined with the content's
  chroma (I and Q). The style's luminance is first given the content's mean
  and standard deviation, so the two are on the same scale.
- Colour histogram matching: before the run, the style image's colours are
  moved by an affine map ``x -> A (x - mu_s) + mu_c`` so that their mean and
  covariance equal the content's; the transfer then runs as usual.

Images are float arrays (..., 3) in [0, 1]. Only numpy is needed.
"""

from __future__ import annotations

import numpy as np

#: RGB -> YIQ (NTSC). Y is the luminance; I and Q carry the colour.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], dtype=np.float64
)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def rgb_to_yiq(image: np.ndarray) -> np.ndarray:
    """YIQ channels of an RGB image, (..., 3)."""
    return (image.astype(np.float64) @ RGB_TO_YIQ.T).astype(np.float32)


def yiq_to_rgb(image: np.ndarray) -> np.ndarray:
    """RGB of a YIQ image, (..., 3), not clipped."""
    return (image.astype(np.float64) @ YIQ_TO_RGB.T).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """Y of an RGB image, keeping a channel axis: (..., 1)."""
    return rgb_to_yiq(image)[..., :1]


def match_luminance(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``source`` luminance shifted and scaled to ``reference``'s mean and
    standard deviation (not clipped)."""
    scale = reference.std() / max(float(source.std()), 1e-6)
    return ((source - source.mean()) * scale + reference.mean()).astype(np.float32)


def with_chroma(y: np.ndarray, content: np.ndarray) -> np.ndarray:
    """An RGB image with luminance ``y`` (..., 1) and ``content``'s I and Q,
    clipped to [0, 1]."""
    yiq = np.concatenate([y, rgb_to_yiq(content)[..., 1:]], axis=-1)
    return np.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def match_color(source: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``source`` with its colour mean and covariance made ``reference``'s.

    The map is ``A = C_r^(1/2) C_s^(-1/2)`` with symmetric matrix square roots
    (the paper's "image analogies" variant). The result is not clipped, so
    the two moments match exactly; values may leave [0, 1] slightly.
    """
    src = source.reshape(-1, 3).astype(np.float64)
    ref = reference.reshape(-1, 3).astype(np.float64)
    mu_s, mu_r = src.mean(0), ref.mean(0)
    a = _sqrtm(np.cov(ref, rowvar=False)) @ np.linalg.inv(_sqrtm(np.cov(src, rowvar=False)))
    return ((src - mu_s) @ a.T + mu_r).reshape(source.shape).astype(np.float32)


def _sqrtm(c: np.ndarray, floor: float = 1e-8) -> np.ndarray:
    """Symmetric square root of a covariance matrix (eigenvalues floored, so
    a flat-coloured image does not divide by zero)."""
    values, vectors = np.linalg.eigh(c)
    return (vectors * np.sqrt(np.maximum(values, floor))) @ vectors.T
