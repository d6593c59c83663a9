"""Targets: what the output must match, made by one builder for every mode.

- P, the content's features at each content layer, put together from the
  cores of its tiles;
- A at each style layer, from each style image's Gram matrix summed over
  its own tiles (with a style mask, of its masked features) and the
  positions or mass it sums over, by the loss form's rule
  (`nst.core.losses.LossForm.target_of`): blended over the style images, or with
  regions, one A_r per region, rescaled to the region's mass, beside the
  regions' masks at each style layer; then made ready for the run
  (`nst.core.losses.LossForm.prepare`: W2 takes the covariance's root here, once);
- for a video frame, the warped previous output, its consistency and the
  temporal weight.

Untiled is one tile, the whole image (`nst.core.tiles.layout`), whose features
are VGG19's on the whole image. Targets of inputs named by a path, URL or
sample are remembered for the next run with the same inputs and settings
(`for_job`), so a studio's Run again, a sweep or a loop of calls computes
them once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

from nst.base import geometry
from nst.base.backend import tf
from nst.base.config import Config, Role, named
from nst.core.features import Extractor
from nst.core.losses import Objective, Targets, gram_matrix
from nst.core.scene import Prepared, Scene
from nst.core.tiles import core_slice, layer_map, layout, tile_features
from nst.io.regions import layer_masks

#: How many jobs' targets are remembered (each is about one VGG19 feature map
#: of the output at the content layer, and a few Gram matrices).
REMEMBERED = 8
#: The settings that change a job's targets, beside its inputs and size.
TARGETS = named(Role.TARGETS)
_REMEMBERED: OrderedDict[tuple, Targets] = OrderedDict()
_GUARD = threading.Lock()  # a live run's thread and the caller's may both ask


def targets_for(extractor: Extractor, scene: Scene, blend: tuple[float, ...], config: Config) -> Targets:
    """The targets of ``scene`` (see the module), tile by tile when
    ``config.tile`` asks; ``blend`` weighs the style images (unused with
    regions: each style has its own)."""
    height, width = scene.content.shape[:2]
    form = Objective.of(config).form
    content = [tf.constant(p) for p in _content_features(extractor, scene.content, config)]
    per_style = [
        _style_sums(extractor, style, mask, config)
        for style, mask in zip(scene.styles, scene.style_regions or [None] * len(scene.styles))
    ]
    if scene.regions is not None:
        guides = layer_masks(scene.regions, config)
        style = []
        for i, guide in enumerate(guides):
            mass = np.square(guide).sum(axis=(1, 2))
            style.append(
                form.prepare(tf.stack([form.target_of(*sums[i], mass[r]) for r, sums in enumerate(per_style)], 1))
            )
        targets = Targets(content, style, masks=[tf.constant(g[None]) for g in guides])
    else:
        positions = [
            (height // geometry.stride(layer)) * (width // geometry.stride(layer)) for layer in config.style_layers
        ]
        style = [
            form.prepare(sum(b * form.target_of(*sums[i], m) for b, sums in zip(blend, per_style)))
            for i, m in enumerate(positions)
        ]
        targets = Targets(content, style)
    if scene.previous is not None:  # a video frame (nst.modes.video)
        image, trusted, weight = scene.previous
        temporal = [tf.constant(image[None]), tf.constant(trusted[None]), tf.constant([weight], tf.float32)]
        targets = targets._replace(temporal=temporal)
    return targets


def for_job(job: Prepared, scale: int, extractor: Extractor) -> Targets:
    """The targets of ``job`` at scale ``scale``, remembered for the same
    inputs and settings when every input is named (a path, URL or sample:
    a file's size and time of change are part of what must agree)."""
    c, scene = job.config, job.scenes[scale]
    names = (
        job.sources["content"],
        *job.sources["styles"],
        *job.sources.get("masks", ()),
        job.sources.get("mask_map"),
        *job.sources.get("style_masks", ()),
    )
    named = scene.previous is None and not any(n.startswith("<") for n in names if n)
    if not named:
        return targets_for(extractor, scene, job.blend, c)
    key = (
        tuple(_stamp(n) for n in names),
        scene.content.shape,
        c.schedule[scale].size,
        job.blend,
        c.seed if c.weights == "random" else None,  # the seed makes the random network
        *(getattr(c, name) for name in TARGETS),
    )
    with _GUARD:
        if key in _REMEMBERED:
            _REMEMBERED.move_to_end(key)
            return _REMEMBERED[key]
    targets = targets_for(extractor, scene, job.blend, c)
    with _GUARD:
        _REMEMBERED[key] = targets
        while len(_REMEMBERED) > REMEMBERED:
            _REMEMBERED.popitem(last=False)
    return targets


def _stamp(name: str | None) -> tuple:
    """A named input and, for a file, its size and time of change."""
    try:
        stat = os.stat(name) if name else None
    except (OSError, ValueError):
        stat = None
    return (name,) if stat is None else (name, stat.st_size, stat.st_mtime_ns)


def _content_features(extractor: Extractor, content: np.ndarray, config: Config) -> list[np.ndarray]:
    """P at each content layer: the content's features, put together from its tiles' cores."""
    height, width = content.shape[:2]
    p = [
        np.zeros(
            (1, height // geometry.stride(layer), width // geometry.stride(layer), geometry.channels(layer)), np.float32
        )
        for layer in config.content_layers
    ]
    for tile in layout(height, width, config):
        top, bottom, left, right = tile.input
        features = tile_features(extractor, tf.constant(content[None, top:bottom, left:right]), tile.trimmed, config)
        for target, f, layer in zip(p, features.content, config.content_layers):
            r0, r1, c0, c1 = tile.bounds(*layer_map(config, layer))
            rows, cols = core_slice(tile, geometry.stride(layer))
            target[:, rows, cols] = f.numpy()[:, r0:r1, c0:c1]
    return p


def _style_sums(extractor: Extractor, style: np.ndarray, mask: np.ndarray | None, config: Config) -> list[tuple]:
    """A style image's Gram matrix at each style layer, summed over its own
    tiles, and the positions it sums over; with a style mask (`nst.io.regions`),
    of the masked features, and the mask's mass."""
    h, w = style.shape[:2]
    strides = [geometry.stride(layer) for layer in config.style_layers]
    masks = layer_masks(mask[None], config) if mask is not None else [None] * len(strides)
    statistics = Objective.of(config).form.statistics
    sums = [0.0] * len(strides)
    for tile in layout(h, w, config):
        top, bottom, left, right = tile.input
        features = tile_features(extractor, tf.constant(style[None, top:bottom, left:right]), tile.trimmed, config)
        for i, (f, layer, s, m) in enumerate(zip(features.style, config.style_layers, strides, masks)):
            r0, r1, c0, c1 = tile.bounds(*layer_map(config, layer))
            core = statistics(f[:, r0:r1, c0:c1])
            if m is not None:
                rows, cols = core_slice(tile, s)
                core = core * m[0, rows, cols][None, ..., None]
            sums[i] += gram_matrix(core)
    return [
        (g, float(np.square(m).sum()) if m is not None else float((h // s) * (w // s)))
        for g, m, s in zip(sums, masks, strides)
    ]
