"""Regions: a style per part of the picture (Gatys et al. 2017, spatial control).

Each style image gets a mask over the output, white where that style
applies (`output_masks`: one greyscale mask per style, or one colour-coded
map). Pixels that no mask covers get the content term only.

At each style layer the masks are brought to the layer's resolution
(`layer_masks`), and each region r has its own *guided* Gram matrix,
``G_r = (m_r F)^T (m_r F)``, a sum over the region's positions weighted by
the mask squared. Its mass ``M_r = sum m_r^2`` is the number of positions it
stands for, so its target is its style image's Gram matrix rescaled to that
many positions, ``A_r = A * M_r / M_style`` (the report's rescaling, see
`nst.core.losses.style_target`; with a style mask, A and M_style are the style
image's own guided ones). The style term of a layer is
``E_l = sum_r sum (G_r - A_r)^2 / (4 N^2 M_r M)``
(`nst.core.losses.guided_style_loss`): each region is the report's E_l over its
own positions, weighted by the share of the image it covers, so a pixel
feels the same pull towards its style as in an unmasked run, and one mask
of all ones is the report's E_l exactly. Every loss form takes masks the
same way: ``E_l = sum_r (M_r / M) E(G_r, A_r, M_r)``, with its own rule for
A_r (`nst.core.losses.LossForm`).

The optimisers see the same loss-and-gradient interface: the masks are part
of the targets (`Targets.masks`), and only the objective reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.ndimage

from nst.base import geometry
from nst.base.backend import tf
from nst.base.config import Config, ConfigError
from nst.io.images import ImageError, ImageSource, load_image, source_name

#: How far a mask's aspect ratio may differ from the output's before it is
#: refused (it would be stretched onto another picture).
ASPECT_TOLERANCE = 0.02
#: In a colour-coded map, pixels at least this close to black (RGB distance
#: on 0-255) belong to no region.
BLACK = 40.0


def record(masks: Sequence[ImageSource] | ImageSource, style_masks: Sequence[ImageSource] | None) -> dict[str, Any]:
    """What the output's record says of the masks."""
    if isinstance(masks, (list, tuple)):
        described: dict[str, Any] = {"masks": [source_name(m) for m in masks]}
    else:
        described = {"mask_map": source_name(masks)}
    if style_masks is not None:
        described["style_masks"] = [source_name(m) for m in style_masks]
    return described


def style_regions(style_masks: Sequence[ImageSource] | None, styles: list[np.ndarray]) -> list[np.ndarray | None]:
    """The part of each style image (at its size here) that its style is
    taken from: its style mask, or None (all of it) without style masks."""
    if style_masks is None:
        return [None] * len(styles)
    loaded = [load_mask(m, *s.shape[:2], f"style mask {i + 1}") for i, (m, s) in enumerate(zip(style_masks, styles))]
    for i, mask in enumerate(loaded):
        if not mask.any():
            raise ImageError(
                f"style mask {i + 1} {source_name(style_masks[i])} is black everywhere: "
                f"nothing of its style image would be used; make the part to use white"
            )
    return loaded


def check(
    masks: Sequence[ImageSource] | ImageSource, style_masks: Sequence[ImageSource] | None, styles: int, config: Config
) -> None:
    """Refuse what cannot be a region set, before anything loads: one mask
    per style image (a list) or one colour map (a single image), style
    masks one per style image, no blend."""
    if isinstance(masks, (list, tuple)) and len(masks) != styles:
        raise ConfigError(f"{len(masks)} masks for {styles} style images: give one mask per style image, in order")
    if style_masks is not None and len(style_masks) != styles:
        raise ConfigError(f"{len(style_masks)} style masks for {styles} style images: give one per style image")
    if config.style_blend is not None:
        raise ConfigError("style_blend mixes the styles everywhere; with masks each style has its own region")


def _read(source: ImageSource, height: int, width: int, what: str) -> np.ndarray:
    """The image ``source`` as RGB at its own size, refused (with what to do)
    unless it has the aspect ratio of a ``height`` x ``width`` picture."""
    try:
        image = load_image(source)
    except ImageError as e:
        raise ImageError(f"{what}: {e}") from None
    h, w = image.shape[:2]
    if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
        raise ImageError(
            f"{what} {source_name(source)}: it is {w} x {h} and its picture {width} x {height}; a mask must have the "
            f"shape of the image it covers (any size, the same aspect ratio). Crop or pad it to {width}:{height}."
        )
    return image


def _resize(planes: np.ndarray, height: int, width: int) -> np.ndarray:
    """(height', width', k) planes averaged to (k, height, width)."""
    return tf.image.resize(planes, (height, width), method="area").numpy().transpose(2, 0, 1).clip(0, 1)


def load_mask(source: ImageSource, height: int, width: int, what: str = "mask") -> np.ndarray:
    """A mask as floats in [0, 1], (height, width): any image mode is read
    as grey (its mean over RGB; transparency over white), and any size with
    the picture's aspect ratio is resized to it. Another aspect ratio is
    refused: the mask would be stretched onto another picture."""
    return _resize(_read(source, height, width, what).mean(axis=-1, keepdims=True), height, width)[0]


def mask_map(source: ImageSource, count: int, height: int, width: int) -> np.ndarray:
    """``count`` masks, (count, height, width), from one colour-coded image:
    its ``count`` most common colours other than black, in the order in
    which they first appear reading from the top left (the sky, at the top,
    is usually the first style), each pixel given to its nearest colour;
    black is no region (content only)."""
    pixels = _read(source, height, width, "mask map")
    rgb = np.round(pixels * 255).reshape(-1, 3)
    colours, first, inverse, counts = np.unique(rgb, axis=0, return_index=True, return_inverse=True, return_counts=True)
    bright = np.linalg.norm(colours, axis=1) > BLACK
    if bright.sum() < count:
        raise ImageError(
            f"mask map {source_name(source)}: {bright.sum()} colours besides black, for {count} style "
            f"images: paint one colour per style image (black: content only)"
        )
    common = np.argsort(-counts[bright], kind="stable")[:count]
    chosen = colours[bright][common][np.argsort(first[bright][common])]
    palette = np.concatenate([np.zeros((1, 3)), chosen])
    nearest = np.argmin(((colours[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)  # per distinct colour
    nearest = nearest[inverse.ravel()].reshape(pixels.shape[:2])
    return _resize(np.stack([(nearest == k + 1) for k in range(count)], axis=-1).astype(np.float32), height, width)


def output_masks(masks: Sequence[ImageSource] | ImageSource, styles: int, height: int, width: int) -> np.ndarray:
    """The regions over a ``height`` x ``width`` output, (styles, height,
    width): one mask per style image (a list) or a colour map (one image)."""
    if isinstance(masks, (list, tuple)):
        return np.stack([load_mask(m, height, width, f"mask {i + 1}") for i, m in enumerate(masks)])
    return mask_map(masks, styles, height, width)


def layer_masks(masks: np.ndarray, config: Config) -> list[np.ndarray]:
    """``masks`` (regions, height, width) at each style layer's resolution,
    the way ``config.mask_mode`` says (`nst.base.geometry.layer_masks`)."""
    return geometry.layer_masks(masks, config.style_layers, config.mask_mode)


def sky_mask(photo: np.ndarray) -> np.ndarray:
    """Where the sky is in ``photo`` (1) and is not (0), (height, width): the
    pixels connected to the top edge whose colour has the top rows' hue
    (lightening towards the horizon allowed), without specks or holes. A
    heuristic for the regions figure's outdoor photo, not a segmenter."""
    smooth = scipy.ndimage.uniform_filter(photo, size=(5, 5, 1))
    top = np.median(smooth[: max(1, len(photo) // 20)].reshape(-1, 3), axis=0)
    hue = smooth - smooth.mean(axis=-1, keepdims=True)
    like = (np.linalg.norm(hue - (top - top.mean()), axis=-1) < 0.12) & (smooth.mean(axis=-1) > top.mean() - 0.1)
    labels, _ = scipy.ndimage.label(like)
    sky = np.isin(labels, labels[0][labels[0] > 0])
    sky = scipy.ndimage.binary_fill_holes(scipy.ndimage.binary_opening(sky, iterations=2))
    return sky.astype(np.float32)
