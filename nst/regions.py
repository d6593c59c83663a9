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
`nst.losses.style_target`; with a style mask, A and M_style are the style
image's own guided ones). The style term of a layer is
``E_l = sum_r sum (G_r - A_r)^2 / (4 N^2 M_r M)``
(`nst.losses.guided_style_loss`): each region is the report's E_l over its
own positions, weighted by the share of the image it covers, so a pixel
feels the same pull towards its style as in an unmasked run, and one mask
of all ones is the report's E_l exactly.

The optimisers see the same loss-and-gradient interface: the masks are part
of the targets (`Targets.masks`), and only the objective reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.ndimage

from nst.backend import tf
from nst.config import VGG19_CONV_LAYERS, Config, ConfigError
from nst.features import Extractor
from nst.images import ImageError, ImageSource, describe, load_image
from nst.losses import Targets, gram_matrix
from nst.optimize import Job, _Scene

#: How far a mask's aspect ratio may differ from the output's before it is
#: refused (it would be stretched onto another picture).
ASPECT_TOLERANCE = 0.02
#: In a colour-coded map, pixels at least this close to black (RGB distance
#: on 0-255) belong to no region.
BLACK = 40.0


def prepare(job: Job, scenes: list[_Scene], config: Config) -> dict[str, Any]:
    """Give each style image of ``job`` its region in every scene (one per
    scale, see `nst.optimize`); what the output's record says of the masks."""
    styles = len(scenes[0].styles)
    check(job.masks, job.style_masks, styles, config)
    for scene in scenes:
        scene.regions = output_masks(job.masks, styles, *scene.content.shape[:2])
        if job.style_masks is not None:
            scene.style_regions = [load_mask(m, *s.shape[:2], f"style mask {i + 1}")
                                   for i, (m, s) in enumerate(zip(job.style_masks, scene.styles))]  # fmt: skip
            for i, mask in enumerate(scene.style_regions):
                if not mask.any():
                    raise ImageError(f"style mask {i + 1} {describe(job.style_masks[i])} is black everywhere: "
                                     f"nothing of its style image would be used; make the part to use white")  # fmt: skip
    if isinstance(job.masks, (list, tuple)):
        record: dict[str, Any] = {"masks": [describe(m) for m in job.masks]}
    else:
        record = {"mask_map": describe(job.masks)}
    if job.style_masks is not None:
        record["style_masks"] = [describe(m) for m in job.style_masks]
    return record


def check(masks: Sequence[ImageSource] | ImageSource, style_masks: Sequence[ImageSource] | None, styles: int,
          config: Config) -> None:  # fmt: skip
    """Refuse what cannot be a region set, before anything loads: one mask
    per style image (a list) or one colour map (a single image), style
    masks one per style image, the report's loss form."""
    if isinstance(masks, (list, tuple)) and len(masks) != styles:
        raise ConfigError(f"{len(masks)} masks for {styles} style images: give one mask per style image, in order")
    if style_masks is not None and len(style_masks) != styles:
        raise ConfigError(f"{len(style_masks)} style masks for {styles} style images: give one per style image")
    if config.loss_form != "report":
        raise ConfigError(f"masks work with the report's losses (loss_form 'report'), not {config.loss_form!r}")
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
            f"{what} {describe(source)}: it is {w} x {h} and its picture {width} x {height}; a mask must have the "
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
    colours, first, inverse, counts = np.unique(rgb, axis=0, return_index=True, return_inverse=True,
                                                return_counts=True)  # fmt: skip
    bright = np.linalg.norm(colours, axis=1) > BLACK
    if bright.sum() < count:
        raise ImageError(f"mask map {describe(source)}: {bright.sum()} colours besides black, for {count} style "
                         f"images: paint one colour per style image (black: content only)")  # fmt: skip
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
    """``masks`` (regions, height, width) at each style layer's resolution.

    'propagate' (Gatys et al.'s way): the masks go through the network's
    structure, each 3 x 3 convolution a 3 x 3 mean and each pooling a 2 x 2
    mean, so a position's value is the share of its receptive field inside
    the region and borders are soft. 'erode': each pooling a 2 x 2 mean (a
    plain resize), then at each layer a 3 x 3 minimum, so positions whose
    3 x 3 window leaves the region get no style from it."""
    deepest = max(VGG19_CONV_LAYERS.index(layer) for layer in config.style_layers) if config.style_layers else -1
    current, block, at = masks.astype(np.float32), 1, {}
    for layer in VGG19_CONV_LAYERS[: deepest + 1]:
        if int(layer[5]) > block:  # VGG19's pooling (an odd last row or column dropped)
            r, h, w = current.shape[0], current.shape[1] // 2, current.shape[2] // 2
            current = current[:, : 2 * h, : 2 * w].reshape(r, h, 2, w, 2).mean(axis=(2, 4))
            block = int(layer[5])
        if config.mask_mode == "propagate":
            current = scipy.ndimage.uniform_filter(current, size=(1, 3, 3), mode="nearest")
            at[layer] = current
        else:
            at[layer] = scipy.ndimage.grey_erosion(current, size=(1, 3, 3), mode="nearest")
    return [at[layer].clip(0, 1) for layer in config.style_layers]


def blend_targets(extractor: Extractor, scene: _Scene, blend: tuple[float, ...], config: Config) -> Targets:
    """The targets of a run with regions (``scene.regions`` set; ``blend`` is
    unused: each style has its own region): P at the content layers, and per
    style layer A_r for every region, (1, regions, N, N), with the masks at
    that layer, (1, regions, h, w). (`nst.tiles.blend_targets` makes the
    same a tile at a time.)"""
    content = extractor(scene.content[None])
    per_style = []
    for style, style_mask in zip(scene.styles, scene.style_regions):
        features = extractor(style[None])
        if style_mask is None:
            per_style.append([(gram_matrix(f), float(f.shape[1] * f.shape[2])) for f in features.style])
        else:
            per_style.append([(gram_matrix(f * m[0][None, ..., None]), float(np.square(m).sum()))
                              for f, m in zip(features.style, layer_masks(style_mask[None], config))])  # fmt: skip
    return targets_from([tf.constant(f) for f in content.content], per_style, scene.regions, config)


def targets_from(content: list[tf.Tensor], per_style: list[list[tuple[tf.Tensor, float]]], regions: np.ndarray,
                 config: Config) -> Targets:  # fmt: skip
    """Targets with regions from the content targets and, per style image
    and style layer, its Gram matrix and the positions (or style-mask mass)
    it sums over: each A_r rescaled to its region's mass."""
    guides = layer_masks(regions, config)
    style_targets = []
    for i, guide in enumerate(guides):
        mass = np.square(guide).sum(axis=(1, 2))
        grams = [gram * (mass[r] / max(style_mass, 1e-12)) for r, (gram, style_mass) in
                 enumerate(s[i] for s in per_style)]  # fmt: skip
        style_targets.append(tf.stack(grams, axis=1))
    return Targets(content=content, style=style_targets, masks=[tf.constant(g[None]) for g in guides])
