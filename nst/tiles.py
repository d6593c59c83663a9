"""Exact tiled evaluation: outputs of any size in memory bounded by the tile.

Both terms of the report's objective are sums over positions: the content
term directly, and each style term through its Gram matrix, which is a sum
over positions too, ``G = sum_tiles F_t^T F_t``. So the objective and its
gradient can be had a tile at a time, with only one tile's activations in
memory:

1. Forward, tile by tile: each style layer's G and the content term, summed
   over the positions each tile owns (its core).
2. The loss from the whole G, and ``dE_l/dG_l`` (N x N, small).
3. Forward and backward, tile by tile, of a surrogate whose gradient with
   respect to the core's features is the whole objective's:
   ``alpha * content(core) + sum_l <beta w_l dE_l/dG_l, F_core^T F_core>``.
   Its gradient with respect to the tile's pixels is added into the image's.

A tile's input is its core plus a halo (`Config.tile_halo`, the receptive
field radius of the deepest layer used), clipped to the image, and every
edge of a core or an input inside the image lies on the grid of the deepest
pooling (`Config.min_side`, 16 px up to block5). Then every core feature is
the untiled one (a convolution meets zero padding only at the image's own
border, and pooling windows fall where they do untiled), and so is the
summed gradient, up to float rounding. The optimisers see the same
loss-and-gradient interface as untiled (`TiledProblem`) and never know.

Each tile's passes are compiled (once per tile shape); the loop over tiles
runs in Python, so that only one tile is ever in flight, or, where the
device has several replicas (GPUs, TPU cores), one tile per replica at once
through `tf.distribute`, the path batched sweeps take.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nst.backend import tf
from nst.config import VGG19_BLOCK_CHANNELS, Config
from nst.features import Extractor
from nst.losses import (
    Targets,
    Weights,
    content_loss,
    gram_matrix,
    guided_gram,
    guided_loss_of_gram,
    rescaled_gram,
    style_loss_of_gram,
    temporal_term,
    total_variation_loss,
)
from nst.optimize import _Problem, _Scene


@dataclass(frozen=True)
class Tile:
    """One tile: the rows and columns of the image it owns (``core``) and
    those its VGG19 pass reads (``input``: the core and its halo), as
    (top, bottom, left, right) in pixels."""

    core: tuple[int, int, int, int]
    input: tuple[int, int, int, int]

    def bounds(self, stride: int) -> list[int]:
        """The core's rows and columns in the tile's feature map at a layer
        of this stride: [top, bottom, left, right)."""
        top, bottom, left, right = self.core
        in_top, _, in_left, _ = self.input
        rows = (top - in_top) // stride, (top - in_top) // stride + bottom // stride - top // stride
        cols = (left - in_left) // stride, (left - in_left) // stride + right // stride - left // stride
        return [*rows, *cols]

    def feature_slice(self, stride: int) -> tuple[slice, slice]:
        """The rows and columns of the whole image's feature map at this
        stride that the tile's feature map covers."""
        in_top, in_bottom, in_left, in_right = self.input
        return (slice(in_top // stride, in_top // stride + (in_bottom - in_top) // stride),
                slice(in_left // stride, in_left // stride + (in_right - in_left) // stride))  # fmt: skip


def layout(height: int, width: int, config: Config) -> list[Tile]:
    """The tiles of a ``height`` x ``width`` image: cores of ``config.tile``
    pixels (rounded up to the pooling grid) from the top left, the last in
    each direction ending at the image's edge; each input is its core and
    `Config.tile_halo` around it, clipped to the image."""
    grid, halo = config.min_side, config.tile_halo
    side = -(-config.tile // grid) * grid

    def spans(n: int) -> list[tuple[int, int]]:
        return [(a, min(a + side, n)) for a in range(0, n, side)]

    return [
        Tile((top, bottom, left, right),
             (max(0, top - halo), min(height, bottom + halo), max(0, left - halo), min(width, right + halo)))
        for top, bottom in spans(height)
        for left, right in spans(width)
    ]  # fmt: skip


def _stride(layer: str) -> int:
    return 2 ** (int(layer[5]) - 1)  # "block<b>_conv<k>": after b - 1 poolings


def _mask(features: tf.Tensor, bounds: tf.Tensor) -> tf.Tensor:
    """``features`` with every position outside ``bounds`` (a core's rows
    and columns, see `Tile.bounds`) set to zero."""
    rows, cols = tf.range(tf.shape(features)[1]), tf.range(tf.shape(features)[2])
    inside_rows = tf.cast((rows >= bounds[0]) & (rows < bounds[1]), features.dtype)
    inside_cols = tf.cast((cols >= bounds[2]) & (cols < bounds[3]), features.dtype)
    return features * (inside_rows[:, None] * inside_cols[None, :])[None, :, :, None]


class TiledProblem(_Problem):
    """`_Problem` with the objective and its gradient computed tile by tile
    (see the module): the same interface, for Adam and L-BFGS alike."""

    def __init__(
        self,
        start: np.ndarray,
        extractor: Extractor,
        targets: Targets,
        weights: Weights,
        config: Config,
        strategy: tf.distribute.Strategy,
    ) -> None:
        # The image, its optimiser and the loss live on one device; the
        # tiles' passes go over all of ``strategy``'s replicas (`_each_tile`).
        self.spread = strategy
        super().__init__(start, extractor, targets, weights, config, tf.distribute.get_strategy())
        self.jit = False  # the loop over tiles runs in Python; each tile's passes are compiled
        self.tiles = layout(start.shape[1], start.shape[2], config)
        self.style_strides = [_stride(layer) for layer in config.style_layers]
        self.content_strides = [_stride(layer) for layer in config.content_layers]
        self.positions = [(start.shape[1] // s) * (start.shape[2] // s) for s in self.style_strides]

        self._sums, self._gradient = self._per_group(self._tile_sums), self._per_group(self._tile_gradient)

    def compiled(self, fn: Callable) -> Callable:
        """``fn`` through the strategy, eagerly: each tile's passes are compiled instead."""
        return functools.partial(self.run, fn)

    # -- one tile, compiled -------------------------------------------------

    def _core_features(self, image: tf.Tensor, style_bounds: tf.Tensor, content_bounds: tf.Tensor):
        features = self.extractor(image)
        return ([_mask(f, b) for f, b in zip(features.style, tf.unstack(style_bounds))],
                [_mask(f, b) for f, b in zip(features.content, tf.unstack(content_bounds))])  # fmt: skip

    def _content(self, content: list[tf.Tensor], targets: list[tf.Tensor], content_bounds: tf.Tensor) -> tf.Tensor:
        """The content term over the core (its mean over content layers)."""
        terms = [content_loss(f, _mask(p, b)) for f, p, b in zip(content, targets, tf.unstack(content_bounds))]
        return tf.add_n(terms) / len(terms) if terms else tf.zeros([self.batch])

    @staticmethod
    def _grams(style: list[tf.Tensor], masks: list[tf.Tensor]) -> list[tf.Tensor]:
        """The core's Gram matrices; with regions, each region's guided one."""
        return [guided_gram(f, m) for f, m in zip(style, masks)] if masks else [gram_matrix(f) for f in style]

    def _tile_sums(self, image, style_bounds, content_bounds, targets, masks):
        """Pass 1: the core's Gram matrices and content term."""
        style, content = self._core_features(image, style_bounds, content_bounds)
        return self._grams(style, masks), self._content(content, targets, content_bounds)

    def _tile_gradient(self, image, style_bounds, content_bounds, targets, masks, grads_of_gram, content_weight):
        """Pass 3: the gradient of the surrogate with respect to the tile's pixels."""
        with tf.GradientTape() as tape:
            tape.watch(image)
            style, content = self._core_features(image, style_bounds, content_bounds)
            surrogate = tf.reduce_sum(content_weight * self._content(content, targets, content_bounds))
            for g, d in zip(self._grams(style, masks), grads_of_gram):
                surrogate += tf.reduce_sum(d * g)
        return tape.gradient(surrogate, image)

    # -- the whole image --------------------------------------------------------

    def _inputs(self, tile: Tile) -> tuple:
        top, bottom, left, right = tile.input
        image = self.image[:, top:bottom, left:right]
        style_bounds = tf.constant(
            [tile.bounds(s) for s in self.style_strides], tf.int32, shape=[len(self.style_strides), 4]
        )
        content_bounds = tf.constant([tile.bounds(s) for s in self.content_strides], tf.int32,
                                     shape=[len(self.content_strides), 4])  # fmt: skip
        targets = [p[:, rows, cols] for p, (rows, cols) in
                   zip(self.targets.content, (tile.feature_slice(s) for s in self.content_strides))]  # fmt: skip
        masks = [m[:, :, rows, cols] for m, (rows, cols) in
                 zip(self.targets.masks, (tile.feature_slice(s) for s in self.style_strides))]  # fmt: skip
        return image, style_bounds, content_bounds, targets, masks

    def _evaluate(self, gradient: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Every term of the objective, stacked as `objective` orders them,
        and (if asked) the gradient of the total with respect to the image."""
        grams = [0.0] * len(self.positions)
        content = 0.0
        for _, (tile_grams, tile_content) in self._each_tile(self._sums):
            grams = [g + t for g, t in zip(grams, tile_grams)]
            content += tile_content
        w = self.weights
        with tf.GradientTape() as tape:
            tape.watch(grams)
            tape.watch(self.image)
            if self.targets.masks:  # regions (nst.regions): each region's term, weighted by its mass
                masses = [tf.reduce_sum(tf.square(m), axis=[2, 3]) for m in self.targets.masks]
                losses = [guided_loss_of_gram(g, a, mass, m) for g, a, mass, m in
                          zip(grams, self.targets.style, masses, self.positions)]  # fmt: skip
            else:
                losses = [style_loss_of_gram(g, a, m) for g, a, m in zip(grams, self.targets.style, self.positions)]
            terms = {f"style/{layer}": e for layer, e in zip(self.config.style_layers, losses)}
            style = tf.add_n([w.layers[:, i] * e for i, e in enumerate(terms.values())] or [tf.zeros_like(w.style)])
            tv = total_variation_loss(self.image)
            weighted = w.style * style + w.tv * tv  # the part differentiated here; content, tile by tile
            if self.targets.temporal:  # a video frame's (nst.video): per pixel, on the whole image
                weighted += temporal_term(self.image, self.targets.temporal, terms)
        values = {"total": w.content * content + weighted, "content": content, "style": style, "tv": tv, **terms}
        self.names = list(values)
        stacked = tf.stack(list(values.values()))
        if not gradient:
            return stacked, None
        grads_of_gram, pixels = tape.gradient(weighted, [grams, self.image])
        total = np.array(pixels if pixels is not None else tf.zeros_like(self.image))
        for tile, tile_gradient in self._each_tile(self._gradient, grads_of_gram, tf.identity(w.content)):
            top, bottom, left, right = tile.input
            total[:, top:bottom, left:right] += tile_gradient.numpy()
        return stacked, tf.constant(total)

    def _per_group(self, fn: Callable) -> Callable:
        """``fn`` compiled for a group of tiles of one shape, one tile per
        replica of ``self.spread`` (GPUs, TPU cores, logical CPU devices):
        ``run(inputs of each tile, *shared)`` returns each tile's result.
        Each replica has its own compiled ``fn``, traced for its device's
        copy of VGG19 (XLA compiles each tile shape once per device), and
        the replicas run at once through `tf.distribute`."""
        jit, n = self.config.jit_compile, self.spread.num_replicas_in_sync
        per_replica = [tf.function(fn, jit_compile=jit, reduce_retracing=True) for _ in range(n)]
        if n == 1:
            return lambda group, *shared: [per_replica[0](*group[0], *shared)]

        def on_replica(*args: object) -> object:
            # (On a TPU the replicas are one program and the id is not known
            # when tracing: one function serves them all.)
            replica = tf.get_static_value(tf.distribute.get_replica_context().replica_id_in_sync_group)
            return per_replica[0 if replica is None else int(replica)](*args)

        together = tf.function(lambda *args: self.spread.run(on_replica, args=args), reduce_retracing=True)

        def run(group: list[tuple], *shared: object) -> list:
            # A group smaller than the replicas repeats its last tile; those results are dropped.
            inputs = self.spread.experimental_distribute_values_from_function(
                lambda context: group[min(context.replica_id_in_sync_group, len(group) - 1)]
            )
            return list(self.spread.experimental_local_results(together(*inputs, *shared)))[: len(group)]

        return run

    def _each_tile(self, fn: Callable, *shared: object) -> Iterator[tuple[Tile, Any]]:
        """(tile, ``fn``'s result for it) for every tile (see `_per_group`),
        tiles of one shape a group at a time, as many as there are replicas;
        yielded as they come, so that only one group's results are held."""
        n = self.spread.num_replicas_in_sync
        shapes: dict[tuple[int, int], list[Tile]] = {}
        for tile in self.tiles:
            top, bottom, left, right = tile.input
            shapes.setdefault((bottom - top, right - left), []).append(tile)
        for tiles in shapes.values():
            for first in range(0, len(tiles), n):
                group = tiles[first : first + n]
                yield from zip(group, fn([self._inputs(tile) for tile in group], *shared))

    def _local(self) -> tuple[tf.Tensor, tf.Tensor]:
        values, _ = self._evaluate(gradient=False)
        return values, tf.reduce_sum(values[0])

    def _local_with_gradient(self) -> tuple[tf.Tensor, tf.Tensor]:
        return self._evaluate(gradient=True)


def blend_targets(extractor: Extractor, scene: _Scene, blend: tuple[float, ...], config: Config) -> Targets:
    """The targets of `nst.optimize` (P at the content layers, the blend of
    the styles' Gram matrices A), computed tile by tile: the content's core
    features put together, each style image's Gram matrices summed over its
    own tiles and rescaled to the output's positions."""
    content, styles = scene.content, scene.styles
    height, width = content.shape[:2]
    p = [np.zeros((1, height // _stride(layer), width // _stride(layer), VGG19_BLOCK_CHANNELS[int(layer[5])]),
                  np.float32) for layer in config.content_layers]  # fmt: skip
    for tile in layout(height, width, config):
        top, bottom, left, right = tile.input
        features = extractor(tf.constant(content[None, top:bottom, left:right]))
        for target, f, layer in zip(p, features.content, config.content_layers):
            r0, r1, c0, c1 = tile.bounds(_stride(layer))
            core = _core_slice(tile, _stride(layer))
            target[:, core[0], core[1]] = f.numpy()[:, r0:r1, c0:c1]
    strides = [_stride(layer) for layer in config.style_layers]
    per_style = [_style_sums(extractor, style, mask, config) for style, mask in zip(styles, scene.style_regions)]
    content_targets = [tf.constant(t) for t in p]
    if scene.regions is not None:  # a style per region (nst.regions builds on nst.optimize, as this module does)
        from nst.regions import targets_from

        return targets_from(content_targets, per_style, scene.regions, config)
    positions = [(height // s) * (width // s) for s in strides]
    grams = [sum(b * rescaled_gram(*sums[i], m) for b, sums in zip(blend, per_style)) for i, m in enumerate(positions)]
    return Targets(content=content_targets, style=grams)


def _style_sums(extractor: Extractor, style: np.ndarray, mask: np.ndarray | None, config: Config) -> list[tuple]:
    """A style image's Gram matrix at each style layer, summed over its own
    tiles, and the positions it sums over; with a style mask (`nst.regions`),
    of the masked features, and the mask's mass."""
    from nst.regions import layer_masks  # (only with a style mask)

    h, w = style.shape[:2]
    strides = [_stride(layer) for layer in config.style_layers]
    masks = layer_masks(mask[None], config) if mask is not None else [None] * len(strides)
    sums = [0.0] * len(strides)
    for tile in layout(h, w, config):
        top, bottom, left, right = tile.input
        features = extractor(tf.constant(style[None, top:bottom, left:right]))
        for i, (f, s, m) in enumerate(zip(features.style, strides, masks)):
            r0, r1, c0, c1 = tile.bounds(s)
            core = f[:, r0:r1, c0:c1]
            if m is not None:
                rows, cols = _core_slice(tile, s)
                core = core * m[0, rows, cols][None, ..., None]
            sums[i] += gram_matrix(core)
    return [(g, float(np.square(m).sum()) if m is not None else float((h // s) * (w // s)))
            for g, m, s in zip(sums, masks, strides)]  # fmt: skip


def _core_slice(tile: Tile, stride: int) -> tuple[slice, slice]:
    """The rows and columns of the whole image's feature map that the tile's core owns."""
    top, bottom, left, right = tile.core
    return slice(top // stride, bottom // stride), slice(left // stride, right // stride)
