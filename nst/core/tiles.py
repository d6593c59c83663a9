"""Exact tiled evaluation: outputs of any size in memory bounded by the tile.

Every loss form's terms (`nst.core.losses.LossForm`) are functions of sums over
positions: the content term of ``sum (F - P)^2`` (and for the scaled form
``sum |F - P|``), and each style term of the Gram matrix, itself a sum over
positions, ``G = sum_tiles F_t^T F_t`` (with regions, each region's guided
G_r; for W2, of the features and a channel of ones). So the objective and
its gradient can be had a tile at a time, with only one tile's activations
in memory:

1. Forward, tile by tile: each style layer's G and each content layer's
   sums, over the positions each tile owns (its core).
2. The objective from the whole sums (`nst.core.losses.Objective`, as untiled),
   and its gradient with respect to them, ``dE_l/dG_l`` (N x N, small)
   and one number per content sum.
3. Forward and backward, tile by tile, of a surrogate whose gradient with
   respect to the core's features is the whole objective's: each sum over
   the core weighed by the objective's gradient with respect to it,
   ``sum_k <dL/dS_k, S_k(core)> + sum_l <dL/dG_l, F_core^T F_core>``.
   Its gradient with respect to the tile's pixels is added into the image's.
   Both passes carry float16's loss scale (`Problem.scale_loss`).

The last tile of pass 1 goes straight on to its pass 3 (on one replica):
once it has its own sums, the whole sums are known, and the objective with
the other tiles' held fixed has the surrogate's gradient with respect to its
pixels. That spares one forward pass of a tile per step.

A tile's input is its core plus a halo (`Config.tile_halo`, the receptive
field radius of the deepest layer used) clipped to the image; the core's
edges lie on the grid of the deepest pooling (`Config.min_side`, 16 px up
to block5). The halo is trimmed as the layers stop needing it: before each
pooling the maps keep only `Config.tile_margins` positions beyond the core
(an even number, so that the pooling windows fall where they do untiled;
68 px before the first pooling and 2 positions before the fourth, against
70 px at the input). Where the input ends at the image's own border nothing
is trimmed and VGG19 meets the same zero padding as untiled. So every core
feature is the untiled one, and so is the summed gradient, up to float
rounding. (Trimming and going straight on from the last tile shorten a tiled
step: BENCHMARKS.md, "Numbers behind the code's choices".) The
optimisers see the same loss-and-gradient interface as untiled
(`TiledProblem`) and never know.

Each tile's passes are compiled (once per tile shape); the loop over tiles
runs in Python, so that only one tile is ever in flight, or, where the
device has several replicas (GPUs, TPU cores), one tile per replica at once
through `tf.distribute`, the path batched sweeps take.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nst.base import geometry
from nst.base.backend import tf
from nst.base.config import Config
from nst.core.features import Extractor, Features
from nst.core.losses import Targets, Weights, style_grams, weighted_style
from nst.core.problem import Problem

Sides = tuple[bool, bool, bool, bool]


@dataclass(frozen=True)
class Tile:
    """One tile: the rows and columns of the image it owns (``core``) and
    those its VGG19 pass reads (``input``: the core and its halo), as
    (top, bottom, left, right) in pixels; ``trimmed``: the sides (in the
    same order) where the input has the whole halo, which the layers trim
    (elsewhere the input ends at the image's border)."""

    core: tuple[int, int, int, int]
    input: tuple[int, int, int, int]
    trimmed: Sides

    def bounds(self, stride: int, margin: int) -> list[int]:
        """The core's rows and columns in the tile's feature map at a layer
        of this stride whose trimmed sides keep ``margin`` positions beyond
        the core: [top, bottom, left, right)."""
        top, bottom, left, right = self.core
        rows, cols = self.feature_slice(stride, margin)
        return [
            top // stride - rows.start,
            bottom // stride - rows.start,
            left // stride - cols.start,
            right // stride - cols.start,
        ]

    def feature_slice(self, stride: int, margin: int) -> tuple[slice, slice]:
        """The rows and columns of the whole image's feature map at this
        stride that the tile's feature map covers (see `bounds`)."""

        def end(core: int, edge: int, trimmed: bool, outwards: int) -> int:
            return core // stride + outwards * margin if trimmed else edge // stride

        top, bottom, left, right = map(end, self.core, self.input, self.trimmed, (-1, 1, -1, 1))
        return slice(top, bottom), slice(left, right)


def layout(height: int, width: int, config: Config) -> list[Tile]:
    """The tiles of a ``height`` x ``width`` image: cores of ``config.tile``
    pixels (rounded up to the pooling grid) from the top left, the last in
    each direction ending at the image's edge; each input is its core and
    `Config.tile_halo` around it, clipped to the image. Untiled
    (``config.tile`` None), one tile: the whole image."""
    grid, halo = config.min_side, config.tile_halo
    side = -(-(config.tile or max(height, width)) // grid) * grid

    def spans(n: int) -> list[tuple[int, int, int, int]]:  # core and input, start and end
        return [(a, min(a + side, n), max(0, a - halo), min(n, a + side + halo)) for a in range(0, n, side)]

    return [
        Tile(
            (top, bottom, left, right),
            (in_top, in_bottom, in_left, in_right),
            (top - in_top == halo, in_bottom - bottom == halo, left - in_left == halo, in_right - right == halo),
        )
        for top, bottom, in_top, in_bottom in spans(height)
        for left, right, in_left, in_right in spans(width)
    ]


def layer_map(config: Config, layer: str) -> tuple[int, int]:
    """The stride of ``layer`` and the positions beyond the core its map
    keeps in a tile on a trimmed side (see `Tile.bounds`)."""
    return geometry.stride(layer), geometry.kept_margin(config.tile_margins, geometry.block(layer))


def tile_features(extractor: Extractor, image: tf.Tensor, trimmed: Sides, config: Config) -> Features:
    """VGG19's features of a tile's input, its halo trimmed on the
    ``trimmed`` sides before each pooling to `Config.tile_margins`; a
    layer's map then reaches `layer_map`'s margin beyond the core there."""

    if not any(trimmed):  # the whole image, or a tile at its borders all round
        return extractor(image)

    def trim(block: int, x: tf.Tensor) -> tf.Tensor:
        cut = geometry.kept_margin(config.tile_margins, block) - config.tile_margins[block]
        top, bottom, left, right = (cut if side else 0 for side in trimmed)
        # Constant ends (counted from the end where negative): a slice whose
        # end is computed from tf.shape makes XLA treat it as dynamic.
        return x[:, top : -bottom or None, left : -right or None]

    return extractor(image, trim=trim)


def core_only(features: tf.Tensor, bounds: tf.Tensor) -> tf.Tensor:
    """``features`` with every position outside ``bounds`` (a core's rows
    and columns, see `Tile.bounds`) set to zero."""
    rows, cols = tf.range(tf.shape(features)[1]), tf.range(tf.shape(features)[2])
    inside_rows = tf.cast((rows >= bounds[0]) & (rows < bounds[1]), features.dtype)
    inside_cols = tf.cast((cols >= bounds[2]) & (cols < bounds[3]), features.dtype)
    return features * (inside_rows[:, None] * inside_cols[None, :])[None, :, :, None]


class TiledProblem(Problem):
    """`Problem` with the objective and its gradient computed tile by tile
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
        self.style_maps = [layer_map(config, layer) for layer in config.style_layers]
        self.content_maps = [layer_map(config, layer) for layer in config.content_layers]
        self.positions = [(start.shape[1] // s) * (start.shape[2] // s) for s, _ in self.style_maps]

        self._sums, self._gradient = self._per_group(self._tile_sums), self._per_group(self._tile_gradient)
        # With one replica, pass 1's last tile (the largest) goes on to its pass 3 (the module).
        self.last = None
        if strategy.num_replicas_in_sync == 1:
            self.last = max(self.tiles, key=lambda t: (t.input[1] - t.input[0]) * (t.input[3] - t.input[2]))
            self._last = self._per_group(self._last_tile)

    def compiled(self, fn: Callable) -> Callable:
        """``fn`` through the strategy, eagerly: each tile's passes are compiled instead."""
        return functools.partial(self.run, fn)

    # -- one tile, compiled -------------------------------------------------

    def _core_features(self, trimmed: Sides, image: tf.Tensor, style_bounds: tf.Tensor, content_bounds: tf.Tensor):
        features = tile_features(self.extractor, image, trimmed, self.config)
        statistics = self.objective.form.statistics
        return (
            [core_only(statistics(f), b) for f, b in zip(features.style, tf.unstack(style_bounds))],
            [core_only(f, b) for f, b in zip(features.content, tf.unstack(content_bounds))],
        )

    def _content(self, content: list[tf.Tensor], targets: list[tf.Tensor], content_bounds: tf.Tensor):
        """Each content layer's sums over the core (`nst.core.losses.LossForm.content_sums`)."""
        sums = self.objective.form.content_sums
        return [sums(f, core_only(p, b)) for f, p, b in zip(content, targets, tf.unstack(content_bounds))]

    def _tile_sums(self, trimmed, image, style_bounds, content_bounds, targets, masks):
        """Pass 1: the core's Gram matrices (of the loss form's statistics;
        with regions, each region's guided one) and content sums."""
        style, content = self._core_features(trimmed, image, style_bounds, content_bounds)
        return style_grams(style, masks), self._content(content, targets, content_bounds)

    def _tile_gradient(
        self, trimmed, image, style_bounds, content_bounds, targets, masks, grads_of_gram, grads_of_sums
    ):
        """Pass 3: the gradient of the surrogate with respect to the tile's
        pixels (``grads_of_gram`` and ``grads_of_sums``, the objective's
        gradient with respect to the whole sums, carry the loss scale)."""
        with tf.GradientTape() as tape:
            tape.watch(image)
            style, content = self._core_features(trimmed, image, style_bounds, content_bounds)
            surrogate = 0.0
            for s, d in zip(self._content(content, targets, content_bounds), grads_of_sums):
                surrogate += tf.reduce_sum(d * s)
            for g, d in zip(style_grams(style, masks), grads_of_gram):
                surrogate += tf.reduce_sum(d * g)
        return tape.gradient(surrogate, image)

    def _last_tile(self, trimmed, image, style_bounds, content_bounds, targets, masks, others, scale):
        """Pass 1 and pass 3 of the last tile at once: its Gram matrices and
        content sums, and the gradient with respect to its pixels of the
        (scaled) objective with the other tiles' (``others``: Gram matrices
        and content sums) held."""
        with tf.GradientTape() as tape:
            tape.watch(image)
            style, content = self._core_features(trimmed, image, style_bounds, content_bounds)
            grams, sums = style_grams(style, masks), self._content(content, targets, content_bounds)
            whole_grams, whole_sums = (
                (grams, sums)
                if others is None
                else ([g + o for g, o in zip(grams, others[0])], [s + o for s, o in zip(sums, others[1])])
            )
            terms = self.objective.style_terms(whole_grams, self.positions, self.targets)
            content_value = self.objective.content_term(whole_sums, self.targets)
            weighted = self.objective.weighed(content_value, weighted_style(terms, self.weights), self.weights)
            total = tf.reduce_sum(scale * weighted)
        return grams, sums, tape.gradient(total, image)

    # -- the whole image --------------------------------------------------------

    def _inputs(self, tile: Tile) -> tuple:
        top, bottom, left, right = tile.input
        image = self.image[:, top:bottom, left:right]
        style_bounds = tf.constant(
            [tile.bounds(*m) for m in self.style_maps], tf.int32, shape=[len(self.style_maps), 4]
        )
        content_bounds = tf.constant(
            [tile.bounds(*m) for m in self.content_maps], tf.int32, shape=[len(self.content_maps), 4]
        )
        targets = [
            p[:, rows, cols]
            for p, (rows, cols) in zip(self.targets.content, (tile.feature_slice(*m) for m in self.content_maps))
        ]
        masks = [
            m[:, :, rows, cols]
            for m, (rows, cols) in zip(self.targets.masks, (tile.feature_slice(*m) for m in self.style_maps))
        ]
        return image, style_bounds, content_bounds, targets, masks

    def _evaluate(self, gradient: bool) -> tuple[tf.Tensor, tf.Tensor | None]:
        """Every term of the objective (`nst.core.losses.Objective`, as untiled),
        stacked, and (if asked) the gradient of the scaled total with respect
        to the image."""
        last = self.last if gradient else None
        others = [t for t in self.tiles if t is not last]
        scale = self.scale_loss(tf.ones([], tf.float32))  # float16's loss scale (1 otherwise)
        grams, sums = [0.0] * len(self.positions), [0.0] * len(self.content_maps)
        for _, (tile_grams, tile_sums) in self._each_tile(self._sums, others):
            grams = [g + t for g, t in zip(grams, tile_grams)]
            sums = [s + t for s, t in zip(sums, tile_sums)]
        if last is not None:
            ((_, (tile_grams, tile_sums, last_gradient)),) = self._each_tile(
                self._last, [last], (grams, sums) if others else None, scale
            )
            grams = [g + t for g, t in zip(grams, tile_grams)]
            sums = [s + t for s, t in zip(sums, tile_sums)]
        with tf.GradientTape() as tape:
            tape.watch([grams, sums])
            tape.watch(self.image)
            # The terms from the whole sums; their gradients reach the pixels tile by tile.
            terms = self.objective.style_terms(grams, self.positions, self.targets)
            content = self.objective.content_term(sums, self.targets)
            values = self.objective.combine(self.image, content, terms, self.targets, self.weights)
            total = tf.reduce_sum(scale * values["total"])
        self.names = list(values)
        stacked = tf.stack(list(values.values()))
        if not gradient:
            return stacked, None
        grads_of_gram, grads_of_sums, pixels = tape.gradient(total, [grams, sums, self.image])
        image_gradient = np.array(pixels if pixels is not None else tf.zeros_like(self.image))
        gradients = self._each_tile(self._gradient, others, grads_of_gram, grads_of_sums)
        if last is not None:
            gradients = itertools.chain(gradients, [(last, last_gradient)])
        for tile, tile_gradient in gradients:
            top, bottom, left, right = tile.input
            image_gradient[:, top:bottom, left:right] += tile_gradient.numpy()
        return stacked, tf.constant(image_gradient)

    def _per_group(self, fn: Callable) -> Callable:
        """``fn`` compiled for a group of tiles of one shape and trimmed
        sides, one tile per replica of ``self.spread`` (GPUs, TPU cores,
        logical CPU devices): ``run(inputs of each tile, trimmed, *shared)``
        returns each tile's result. The trimmed sides shape the trace: each
        kind has its own functions (`_compile_group`)."""
        kinds: dict[Sides, Callable] = {}

        def run(group: list[tuple], trimmed: Sides, *shared: object) -> list:
            if trimmed not in kinds:
                kinds[trimmed] = self._compile_group(functools.partial(fn, trimmed))
            return kinds[trimmed](group, *shared)

        return run

    def _compile_group(self, fn: Callable) -> Callable:
        """``fn`` for a group of tiles, one per replica (see `_per_group`).
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

        # (A partial, as ``fn`` is: TensorFlow counts retracing per Python
        # function and warns when it is frequent; each kind traces its own.)
        together = tf.function(functools.partial(_run_each, self.spread, on_replica), reduce_retracing=True)

        def run(group: list[tuple], *shared: object) -> list:
            # A group smaller than the replicas repeats its last tile; those results are dropped.
            inputs = self.spread.experimental_distribute_values_from_function(
                lambda context: group[min(context.replica_id_in_sync_group, len(group) - 1)]
            )
            return list(self.spread.experimental_local_results(together(*inputs, *shared)))[: len(group)]

        return run

    def _each_tile(self, fn: Callable, tiles: list[Tile], *shared: object) -> Iterator[tuple[Tile, Any]]:
        """(tile, ``fn``'s result for it) for each of ``tiles`` (see
        `_per_group`), tiles of one shape and trimmed sides a group at a
        time, as many as there are replicas; yielded as they come, so that
        only one group's results are held."""
        n = self.spread.num_replicas_in_sync
        kinds: dict[tuple, list[Tile]] = {}
        for tile in tiles:
            top, bottom, left, right = tile.input
            kinds.setdefault((bottom - top, right - left, tile.trimmed), []).append(tile)
        for kind in kinds.values():
            for first in range(0, len(kind), n):
                group = kind[first : first + n]
                yield from zip(group, fn([self._inputs(tile) for tile in group], group[0].trimmed, *shared))

    def _local(self) -> tuple[tf.Tensor, tf.Tensor]:
        values, _ = self._evaluate(gradient=False)
        return values, tf.reduce_sum(values[0])

    def _local_with_gradient(self) -> tuple[tf.Tensor, tf.Tensor]:
        return self._evaluate(gradient=True)


def _run_each(strategy: tf.distribute.Strategy, fn: Callable, *args: object) -> object:
    return strategy.run(fn, args=args)


def core_slice(tile: Tile, stride: int) -> tuple[slice, slice]:
    """The rows and columns of the whole image's feature map that the tile's core owns."""
    top, bottom, left, right = tile.core
    return slice(top // stride, bottom // stride), slice(left // stride, right // stride)
