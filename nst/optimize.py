"""The run: compute the targets once per scale, then optimise the image.

`stylize` runs one image; `stylize_many` runs several independent ones (a
sweep, see `grid`) as batches, spread over the device's replicas. The images
are a `tf.Variable` of pixels in [0, 1], (batch, height, width, channels);
`stylize` is a batch of one. With Adam, each step computes the objective under a
`tf.GradientTape`, applies one update and clips the pixels back into range,
all in one compiled `tf.function` (XLA by default). With L-BFGS, SciPy's
L-BFGS-B drives the same compiled loss-and-gradient function and keeps the
pixels in [0, 1] as bounds. Either way the lowest-loss image seen is kept on
the device as the run goes, so stopping early (Ctrl-C, a NaN) loses nothing.

Coarse to fine, the run is repeated at each size of ``config.scales``,
starting each from the previous result upsampled, with targets recomputed
from the inputs at that size.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
from PIL import Image

from nst import color
from nst.backend import tf
from nst.config import Config, preset
from nst.device import Device
from nst.device import current as current_device
from nst.features import Extractor, extractor_for
from nst.images import (
    ImageError,
    ImageSource,
    check_source,
    describe,
    expand_moments,
    load_image,
    pack_moments,
    read_metadata,
    require_side,
    save_image,
    to_pil,
    unpack_moments,
)
from nst.losses import Targets, Weights, make_targets, objective
from nst.resources import check_memory, estimate_bytes
from nst.weights import resolve_weights


@dataclass(frozen=True)
class Progress:
    """What a callback receives: where the run is and how it is doing."""

    step: int
    """Steps done so far, over all scales (0 before the first)."""
    steps: int
    """Steps the run will do in all."""
    losses: dict[str, float]
    """The objective's terms at the current image (see `nst.losses.objective`)."""
    elapsed: float
    """Seconds since the first step started."""
    scale: int
    """Which scale is running (0, 1, ...; always 0 unless coarse to fine)."""
    job: int
    """Which job of `stylize_many` this is about (always 0 for `stylize`)."""
    _read_image: Callable[[], np.ndarray] = field(repr=False)

    def image(self) -> np.ndarray:
        """The current image, (height, width, 3) floats in [0, 1]. Copies it
        from the device, so the loop pays only when a callback asks; call it
        during the callback (later it returns a later image)."""
        return self._read_image()

    def pil(self) -> Image.Image:
        """The current image as a PIL image."""
        return to_pil(self.image())


@dataclass
class Result:
    """The outcome of `stylize`."""

    image: np.ndarray
    """The image after the last step, (height, width, 3) floats in [0, 1]."""
    best_image: np.ndarray
    """The lowest-loss image seen (the one to keep)."""
    best_step: int
    """The step at which the best image was seen (at the last scale)."""
    best_loss: float
    history: dict[str, list[float]]
    """Per evaluation, each term of the objective plus 'step', 'size' (of
    the scale, pixels) and 'time' (s). Each scale starts with the loss at its
    starting image, at the step count reached so far."""
    timings: dict[str, float]
    """Seconds: 'setup' (images, model, first targets), 'first_step'
    (includes compilation), 'step' (median of the others), 'total'."""
    config: Config
    sources: dict[str, Any]
    """What the content and style images were (path, URL or kind of object):
    'content', 'style' (several joined by ' + ') and the list 'styles'."""
    stopped: str | None = None
    """Why the run ended early ('interrupted', or a NaN message), else None."""
    device: str = ""
    """Where it ran (see `nst.device`)."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """Settings changed during the run (`nst.live`), each with the step it took effect."""
    adam: dict[str, Any] | None = field(default=None, repr=False)
    """Adam's state at the end, compressed (see `_adam_record`): saved in the
    PNG, so that ``nst --resume`` goes on with it rather than a fresh Adam."""
    normalization: dict[str, Any] | None = None
    """The images the network was normalised over (`nst.normalize`), if it was."""

    @property
    def start_loss(self) -> float | None:
        """The loss at the start of the last scale (``None`` if none was computed)."""
        sizes = self.history.get("size", [])
        return next((t for t, s in zip(self.history["total"], sizes) if s == sizes[-1]), None) if sizes else None

    def metadata(self) -> dict[str, Any]:
        """What a saved PNG records so the result can be reproduced."""
        return {
            "settings": self.config.to_dict(),
            **self.sources,
            "start_loss": self.start_loss,
            "best_step": self.best_step,
            "best_loss": self.best_loss,
            "steps_done": int(self.history["step"][-1]) if self.history.get("step") else 0,
            "stopped": self.stopped,
            "device": self.device,
            **({"changes": self.changes} if self.changes else {}),
            **({"adam": self.adam} if self.adam else {}),
            **({"normalization": self.normalization} if self.normalization else {}),
        }

    def save(self, path: str | os.PathLike, *, which: str = "best") -> Path:
        """Write the best (or 'final') image as a PNG with the settings inside."""
        return save_image(path, self.best_image if which == "best" else self.image, self.metadata())

    def __repr__(self) -> str:  # the arrays and the history would fill a screen
        h, w = self.best_image.shape[:2]
        steps = int(self.history["step"][-1]) if self.history.get("step") else 0
        return (f"Result({w}x{h}, {steps} steps, best_loss={self.best_loss:.4g} at step {self.best_step}, "
                f"stopped={self.stopped!r}, device={self.device!r})")  # fmt: skip


def stylize(
    content: ImageSource,
    style: ImageSource | Sequence[ImageSource],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    masks: Sequence[ImageSource] | ImageSource | None = None,
    style_masks: Sequence[ImageSource] | None = None,
    **overrides: Any,
) -> Result:
    """Render ``content`` in the style of ``style`` (Gatys et al. 2016).

    Args:
        content: a path, URL, ``"sample:NAME"``, PIL image or array.
        style: one such image, or a list of them to blend (see
            ``Config.style_blend``).
        config: the settings (default: the 'report' preset).
        callback: called as ``callback(progress)`` every ``callback_every``
            steps and after the last; see `Progress`.
        masks: regions (`nst.regions`): one mask per style image (white:
            that style applies; uncovered pixels keep the content only), or
            one colour-coded map, one colour per style image.
        style_masks: the part of each style image to take its style from.
        **overrides: any `Config` field, e.g. ``steps=200, style_weight=1e4``;
            ``preset="tutorial"`` starts from that preset instead of ``config``.

    Returns:
        A `Result`. Ctrl-C ends the run early and still returns one.
    """
    (result,) = stylize_many(
        [Job(content, style, masks=masks, style_masks=style_masks)],
        config=config,
        callback=callback,
        callback_every=callback_every,
        **overrides,
    )
    assert result is not None  # one job: it ran, or its interrupt was raised
    return result


@dataclass(frozen=True)
class Job:
    """One run of `stylize_many`: its images, the settings in which it
    differs from the shared config (any `Config` field), its regions'
    masks, if any (see `stylize`), and for a video frame, the previous
    output warped onto it (`nst.video.Previous`: the start and the temporal
    loss's target)."""

    content: ImageSource
    style: ImageSource | Sequence[ImageSource]
    settings: Mapping[str, Any] = field(default_factory=dict)
    masks: Sequence[ImageSource] | ImageSource | None = None
    style_masks: Sequence[ImageSource] | None = None
    previous: Any = None

    def __post_init__(self) -> None:  # a missing file is reported now, not when its batch starts
        for source in [self.content, *_listed(self.style), *_listed(self.masks), *_listed(self.style_masks)]:
            check_source(source)


def _listed(sources: Any) -> list:
    """``sources`` as a list: itself if a list or tuple, [] if None, else [it]."""
    return list(sources) if isinstance(sources, (list, tuple)) else [] if sources is None else [sources]


def grid(
    contents: Sequence[ImageSource], styles: Sequence[ImageSource | Sequence[ImageSource]], **axes: Sequence[Any]
) -> list[Job]:
    """A `Job` for every content, style and combination of the ``axes``'
    values, in that order; e.g. ``grid(["sample:tubingen"],
    ["sample:starry_night"], style_weight=[1e2, 1e3, 1e4])`` is three jobs."""
    combinations = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    return [Job(c, s, settings) for c in contents for s in styles for settings in combinations]


#: Settings in which the runs of one batch may differ: each image has its own.
PER_IMAGE = (
    "content_weight", "style_weight", "tv_weight", "style_layer_weights", "style_blend", "style_scale",
    "preserve_color", "init", "seed", "preset",
)  # fmt: skip
DEFAULTS = Config()


def stylize_many(
    jobs: Sequence[Job],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    **overrides: Any,
) -> list[Result | None]:
    """Several independent runs (a sweep: see `grid`), optimised as batches.

    Jobs whose outputs have the same shape at every scale and whose settings
    differ only in `PER_IMAGE` ones run together, as one batch of images,
    spread over the device's replicas (`nst.device`: all TPU cores, all GPUs).
    Each image's loss depends on it alone and Adam moves each pixel on its
    own, so a batch gives the images of separate runs (tested), in less time
    when the device has room. L-BFGS runs, whose line searches would couple
    the images, run one by one.

    Args:
        jobs: the runs; each job's settings override the shared ones.
        config, **overrides: the shared settings, as for `stylize`.
        callback: as for `stylize`, once per job at each report;
            ``progress.job`` is the job's index in ``jobs``.

    Returns:
        A `Result` per job, in order. If the user interrupts, the batch that
        was running returns its best images so far, and the jobs of batches
        that had not started get ``None``.
    """
    base = _settings(config, overrides)
    # All inputs are read and checked before anything runs.
    prepared = [_Prepared.of(index, job, base) for index, job in enumerate(jobs)]
    batches: dict[tuple, list[_Prepared]] = {}
    for p in prepared:
        batches.setdefault(p.batch_key(), []).append(p)
    results: list[Result | None] = [None] * len(jobs)
    for batch in batches.values():
        try:
            done = _run_batch(batch, callback, callback_every)
        except KeyboardInterrupt:
            if not any(results):  # nothing made yet: nothing to return
                raise
            break
        for p, result in zip(batch, done):
            results[p.index] = result
        if any(r.stopped == "interrupted" for r in done):
            break
    return results


def _settings(config: Config | None, overrides: dict[str, Any]) -> Config:
    """``config`` (default: the report's) with ``overrides``; or the preset they name."""
    if "preset" in overrides:
        if config is not None:
            raise ValueError("give either config or preset, not both")
        return preset(overrides.pop("preset"), **overrides)
    return (config or Config()).replace(**overrides)


@dataclass
class _Prepared:
    """A job ready to run: its full settings, device, inputs at each scale."""

    index: int
    config: Config
    device: Device
    scenes: list[_Scene]
    blend: tuple[float, ...]
    sources: dict[str, Any]

    @classmethod
    def of(cls, index: int, job: Job, base: Config) -> _Prepared:
        config = base.replace(**job.settings)
        styles = _listed(job.style)
        device = current_device(config.device)
        config = _repeatable(config, device).replace(
            weights=resolve_weights(config.weights), precision=device.precision(config.precision, config.optimizer)
        )
        # Each style image is brought to size * style_scale (its Gram targets
        # are rescaled to the output's number of positions).
        scenes = [_Scene.load(job.content, styles, config, size) for size, _ in config.schedule]
        sources = {
            "content": describe(job.content),
            "style": " + ".join(describe(s) for s in styles),
            "styles": [describe(s) for s in styles],  # what --resume reads back
        }
        if job.masks is not None:  # each style its own region (nst.regions builds on this module)
            from nst import regions

            sources.update(regions.prepare(job, scenes, config))
        if job.previous is not None:  # a video frame (nst.video builds on this module too)
            from nst import video

            video.prepare(job.previous, scenes)
        return cls(index, config, device, scenes, config.blend(len(styles)), sources)

    def batch_key(self) -> tuple:
        """Equal for jobs that can share a batch."""
        if self.config.optimizer == "lbfgs":
            return ("alone", self.index)
        shared = {name: getattr(DEFAULTS, name) for name in PER_IMAGE}
        if self.config.weights == "random":  # the seed picks the weights: it must agree
            del shared["seed"]
        shapes = tuple(
            (scene.content.shape, scene.regions is not None and scene.regions.shape, scene.previous is None)
            for scene in self.scenes
        )
        return (dataclasses.replace(self.config, **shared), shapes)


def _run_batch(batch: list[_Prepared], callback: Callable | None, every: int) -> list[Result]:
    """Run ``batch`` as one batch of images; one `Result` per job."""
    t0 = time.perf_counter()
    config, device = batch[0].config, batch[0].device
    strategy = device.strategy if len(batch) == 1 and not config.tile else device.spread
    # Each replica takes an equal share of the images (pad the batch with
    # copies of the last job; their results are dropped), or, tiled, of the tiles.
    replicas = strategy.num_replicas_in_sync
    members = batch if config.tile else batch + [batch[-1]] * (-len(batch) % replicas)
    with strategy.scope():
        extractor = extractor_for(config, str(id(strategy)))
    where = f"{device}" + (f", {replicas} replicas" if replicas > 1 else "")
    targets_of = _targets_for(config, batch[0].scenes[0])
    if config.tile:  # the same problem, evaluated tile by tile (nst.tiles builds on this module)
        from nst.tiles import TiledProblem as problem_class
    else:
        problem_class = _Problem
    run = _Run(batch, callback, every, t0, where)
    images = None
    try:
        for index, (size, steps) in enumerate(config.schedule):
            # 1. Images at this scale: each job's start (the previous scale's
            #    result, upsampled, after the first).
            scenes = [m.scenes[index] for m in members]
            shape = scenes[0].content.shape
            if device.kind == "CPU":  # host memory; a GPU's out-of-memory error is caught below
                check_memory(config, *shape[:2], batch=len(members))
            if images is None:
                starts = [scene.start(m.config) for scene, m in zip(scenes, members)]
            else:
                starts = [_resize(image, shape[:2]) for image in images]
            # 2. Targets, once per scale: P at the content layers and the
            #    blend of the styles' Gram matrices A at the style layers.
            per_job = [targets_of(extractor, scene, m.blend, config) for scene, m in zip(scenes, members)]
            targets = Targets.concat(per_job)
            if index == 0:
                run.timings["setup"] = time.perf_counter() - t0
            # 3. Optimise; the results start the next scale.
            weights = Weights.of([m.config for m in members])
            problem = problem_class(np.stack(starts), extractor, targets, weights, config, strategy)
            run.begin_scale(index, size, problem, [scene.present for scene in scenes])
            images = (_adam if config.optimizer == "adam" else _lbfgs)(problem, config, steps, run.report)
    except KeyboardInterrupt:
        if run.problem is None:  # nothing made yet: there is nothing to return
            raise
        run.stopped = "interrupted"
    except _NonFinite as e:
        run.stopped = str(e)
    except tf.errors.ResourceExhaustedError:
        raise MemoryError(
            f"out of memory on {where} for {len(members)} x a {shape[1]} x {shape[0]} output (about "
            f"{estimate_bytes(config, *shape[:2], len(members)) / 2**30:.1f} GiB needed): use --tile 512 (the same "
            f"result, in tiles), a smaller --size, "
            f"fewer runs at once, or coarse to fine (--scales) on a machine with more memory."
        ) from None
    return [run.result(j) for j in range(len(batch))]


class _Scene:
    """The inputs at one scale, as the optimiser sees them: full colour, or
    luminance only (one channel) when preserving colour that way."""

    def __init__(self, content: np.ndarray, styles: list[np.ndarray], rgb: np.ndarray, mode: str | None) -> None:
        self.content, self.styles, self.rgb, self.mode = content, styles, rgb, mode
        # With regions (set by `nst.regions.prepare`): each style image's
        # region of the output, (styles, height, width), and the part of each
        # style image its style is taken from (None: all of it).
        self.regions: np.ndarray | None = None
        self.style_regions: list[np.ndarray | None] = [None] * len(styles)
        # For a video frame (set by `nst.video.prepare`): the previous output
        # warped onto it, where the flow is trusted, and the temporal weight.
        self.previous: tuple[np.ndarray, np.ndarray, float] | None = None

    @classmethod
    def load(cls, content: ImageSource, styles: list[ImageSource], config: Config, size: int) -> _Scene:
        rgb = require_side(load_image(content, size, config.max_pixels), config.min_side, content)
        style_size = max(round(size * config.style_scale), 1)
        style_rgbs = [require_side(load_image(s, style_size, config.max_pixels), config.min_side, s) for s in styles]
        if config.preserve_color == "histogram":
            return cls(rgb, [color.match_color(s, rgb) for s in style_rgbs], rgb, "histogram")
        if config.preserve_color == "luminance":
            y = color.luminance(rgb)
            return cls(y, [color.match_luminance(color.luminance(s), y) for s in style_rgbs], rgb, "luminance")
        return cls(rgb, style_rgbs, rgb, None)

    def start(self, config: Config) -> np.ndarray:
        """The starting image (see ``Config.init``; a video frame's is the
        previous output warped onto it), in the optimiser's channels."""
        shape = self.content.shape
        if self.previous is not None:
            return self.previous[0]
        if config.init == "content":
            return self.content
        if config.init == "noise":
            return np.random.default_rng(config.seed).uniform(0, 1, shape).astype(np.float32)
        if config.init == "style":
            first = self.styles[0]
        else:
            try:
                first = load_image(config.init, max(shape[:2]), config.max_pixels)
            except ImageError as e:
                raise ImageError(f"init: {e} (init is content, style, noise or an image)") from None
            if self.mode == "luminance":
                first = color.luminance(first)
        return _resize(np.clip(first, 0, 1), shape[:2])

    def present(self, image: np.ndarray) -> np.ndarray:
        """The optimised image as the RGB output (luminance + content chroma)."""
        return color.with_chroma(image, self.rgb) if self.mode == "luminance" else image


def _targets_for(config: Config, scene: _Scene) -> Callable[..., Targets]:
    """How a run's targets are computed: from the whole images, tile by tile
    (`nst.tiles`), or with a style per region (`nst.regions`); for a video
    frame, with its temporal target too (`nst.video`). Each builds on this
    module, so is imported here only when used."""
    if config.tile:
        from nst.tiles import blend_targets
    elif scene.regions is not None:
        from nst.regions import blend_targets
    else:
        blend_targets = _blend_targets
    if scene.previous is not None:
        from nst.video import with_temporal

        return with_temporal(blend_targets)
    return blend_targets


def _blend_targets(extractor: Extractor, scene: _Scene, blend: tuple[float, ...], config: Config) -> Targets:
    """Targets with Gram matrices ``A = sum_k b_k A_k`` over the style images."""
    content_features = extractor(scene.content[None])
    per_style = [make_targets(content_features, extractor(s[None]), config) for s in scene.styles]
    grams = [sum(b * t.style[i] for b, t in zip(blend, per_style)) for i in range(len(config.style_layers))]
    return Targets(content=per_style[0].content, style=grams)


class _NonFinite(ArithmeticError):
    """The loss became NaN or infinite."""


def _compile(fn: Callable, *args: Any, jit_compile: bool) -> Callable:
    """``fn(*args)`` as a `tf.function` of its own. Every run and scale
    compiles its steps afresh, for its own variables; TensorFlow counts traces
    by Python code object, so lambdas here would share one count across runs
    and it would warn of retracing from the fifth run in a process (a
    studio's fifth Run). A partial has no code object: each counts alone."""
    return tf.function(functools.partial(fn, *args), jit_compile=jit_compile)


class _Problem:
    """The batch of images being optimised at one scale, its objective, and
    the best image seen for each with its loss (tracked on the device).

    Under a strategy with several replicas, every replica holds the whole
    batch (it is small next to VGG19's activations) and evaluates its equal
    share of it; the optimiser sums the replicas' gradients, which are zero
    outside each one's share, so every replica applies the same update."""

    def __init__(
        self,
        start: np.ndarray,
        extractor: Extractor,
        targets: Targets,
        weights: Weights,
        config: Config,
        strategy: tf.distribute.Strategy,
    ) -> None:
        self.strategy, self.batch = strategy, len(start)
        # Replicas write equal values: take the first replica's.
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        with strategy.scope():  # on the device(s) that run the steps
            self.image = tf.Variable(start, name="image", aggregation=first)
            self.best = tf.Variable(start, trainable=False, name="best_image", aggregation=first)
            # The images the latest losses belong to (Adam moves `image` on
            # after evaluating it); what a callback sees.
            self.evaluated = tf.Variable(start, trainable=False, name="evaluated_image", aggregation=first)
            self.best_loss = tf.Variable(tf.fill([self.batch], math.inf), trainable=False, aggregation=first)
            # Targets and weights are variables too, read by the compiled
            # steps: a live run (`nst.live`) changes the weights between
            # steps, and a new run on the same graph assigns its own.
            variable = functools.partial(tf.Variable, trainable=False, aggregation=first)
            self.targets = targets.map(variable)
            self.weights = Weights(*(variable(w) for w in weights))
        self.adam: list[dict[str, Any]] | None = None
        """Adam's state per image when it stopped (set by `_adam`)."""
        self.extractor, self.config = extractor, config
        self.names: list[str] = []
        """The objective's terms, in the order `evaluate` stacks them (known once traced)."""
        self.scale_loss: Callable[[tf.Tensor], tf.Tensor] = tf.identity
        """What the total is multiplied by before differentiating (see `_adam`)."""
        # One replica: the whole step is compiled with XLA (``self.jit``).
        # Several: XLA cannot span the replicas' devices, so each replica's
        # VGG19 pass and gradient are compiled, and the gathering and the
        # update between replicas run as a graph around them.
        self.jit = config.jit_compile and strategy.num_replicas_in_sync == 1
        if strategy.num_replicas_in_sync > 1:
            self._compiled_local = _compile(self._local, jit_compile=config.jit_compile)
            self._compiled_gradient = _compile(self._local_with_gradient, jit_compile=config.jit_compile)
        else:
            self._compiled_local, self._compiled_gradient = self._local, self._local_with_gradient

    def compiled(self, fn: Callable) -> Callable:
        """``fn`` run through the strategy (`run`), as one compiled step."""
        return _compile(self.run, fn, jit_compile=self.jit)

    def run(self, fn: Callable) -> Any:
        """``fn()`` on every replica, through the strategy; the first replica's
        results (all replicas return the same)."""
        results = self.strategy.run(fn)
        return tf.nest.map_structure(lambda x: self.strategy.experimental_local_results(x)[0], results)

    def _share(self, x: tf.Tensor) -> tf.Tensor:
        """This replica's share of a tensor with the batch first."""
        context = tf.distribute.get_replica_context()
        if context.num_replicas_in_sync == 1:
            return x
        per = self.batch // context.num_replicas_in_sync
        return tf.gather(x, tf.range(per) + context.replica_id_in_sync_group * per)

    def _local(self) -> tuple[tf.Tensor, tf.Tensor]:
        """This replica's share: every term for each of its images, stacked
        as (terms, share), and their total loss to differentiate."""
        image = self._share(self.image)
        targets = self.targets.map(self._share)
        weights = Weights(*(self._share(w) for w in self.weights))
        losses = objective(image, self.extractor(image), targets, self.config, weights)
        self.names = list(losses)
        return tf.stack(list(losses.values())), tf.reduce_sum(losses["total"])

    def _local_with_gradient(self) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            values, total = self._local()
            total = self.scale_loss(total)
        return values, tf.convert_to_tensor(tape.gradient(total, self.image))

    def _remember(self, values: tf.Tensor) -> tf.Tensor:
        """All replicas' terms, (terms, batch); remembers the best images."""
        context = tf.distribute.get_replica_context()
        if context.num_replicas_in_sync > 1:
            values = context.all_gather(values, axis=1)
        self.evaluated.assign(self.image)
        improved = values[0] < self.best_loss
        self.best.assign(tf.where(improved[:, None, None, None], self.image, self.best))
        self.best_loss.assign(tf.where(improved, values[0], self.best_loss))
        return values

    def evaluate(self) -> tf.Tensor:
        """The objective's terms at the current images, (terms, batch)."""
        return self._remember(self._compiled_local()[0])

    def evaluate_with_gradient(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The terms, and the gradient of the total with respect to the pixels
        (of this replica's share; zero elsewhere)."""
        values, gradient = self._compiled_gradient()
        return self._remember(values), gradient


def _adam(problem: _Problem, config: Config, steps: int, report: Callable) -> np.ndarray:
    """``steps`` Adam updates, each clipped to [0, 1]; the images after the last."""
    optimizer, step, final_evaluation = adam_steps(problem, config)
    scaled = config.precision == "mixed_float16"
    if config.adam_warm_start and not scaled:  # (a scaled loss has scaled gradients)
        _restore_adam(optimizer, problem, config.init)
    if scaled:  # a scaled loss of about 2^26 keeps the gradients well inside float16's range
        start = np.max(final_evaluation().numpy()[0])
        optimizer.dynamic_scale.assign(2.0 ** np.floor(26 - np.log2(max(start, 1e-30))))
    # Entry k of the history is the loss after k updates.
    try:
        for k in range(steps + 1):
            report(k, (step() if k < steps else final_evaluation()).numpy())
    finally:  # stopped or not, the PNG records what a resumed run needs
        problem.adam = None if scaled else _adam_record(optimizer)
    return problem.image.numpy()


def adam_steps(problem: _Problem, config: Config) -> tuple[tf.keras.optimizers.Optimizer, Callable, Callable]:
    """Adam for ``problem``: the optimizer (its moments built, its learning
    rate a variable), one compiled update (evaluate, step, clip to [0, 1];
    returns the terms at the image it evaluated) and one compiled evaluation."""
    with problem.strategy.scope():
        optimizer = tf.keras.optimizers.Adam(
            learning_rate=config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon
        )
        if config.precision == "mixed_float16":
            # float16 tops out at 65504, and the report's losses give feature
            # gradients of 1e7 and more (measured): the backward pass would
            # overflow. Keras' loss scaling multiplies the loss by a scale
            # before it and divides the gradient after, skipping the step and
            # halving the scale on an overflow. The scale is set from the
            # loss at the start (`_adam`) and doubled after 50 good steps.
            optimizer = tf.keras.optimizers.LossScaleOptimizer(optimizer, dynamic_growth_steps=50)
            problem.scale_loss = optimizer.scale_loss
        optimizer.build([problem.image])  # its moment variables now, so the step is traced once

    def update() -> tf.Tensor:
        values, gradient = problem.evaluate_with_gradient()
        optimizer.apply_gradients([(gradient, problem.image)])  # sums the replicas' gradients
        problem.image.assign(tf.clip_by_value(problem.image, 0.0, 1.0))
        return values

    # One compiled step: the losses come back as one small array per step and
    # the images stay on the device unless a callback asks for one.
    return optimizer, problem.compiled(update), problem.compiled(problem.evaluate)


def _adam_record(optimizer: tf.keras.optimizers.Optimizer) -> list[dict[str, Any]]:
    """Per image of the batch, what `_restore_adam` needs: the step count and
    the second moments, pooled (see `nst.images.pack_moments`)."""
    (velocity,) = [v for v in optimizer.variables if v.name.endswith("_velocity")]
    iterations = int(optimizer.iterations.numpy())
    return [pack_moments(v, iterations) for v in velocity.numpy()]


def _restore_adam(optimizer: tf.keras.optimizers.Optimizer, problem: _Problem, init: str) -> None:
    """Go on with the Adam state recorded in the PNG ``init`` (see
    `Config.adam_warm_start`): its second moments, first moments 0 (they
    forget within ~10 steps anyway). A PNG without a record, or one of
    another size, leaves Adam fresh; so does a damaged record, with a warning
    (the command line refuses one before the run)."""
    try:
        record = read_metadata(init).get("adam")
        if not record:
            return
        iterations, pool, pooled = unpack_moments(record, init)
    except ImageError as e:
        warnings.warn(f"{e} Adam starts afresh.", stacklevel=2)
        return
    (velocity,) = [v for v in optimizer.variables if v.name.endswith("_velocity")]
    v = expand_moments(pool, pooled, *velocity.shape[1:3])
    if v is None or v.shape[2] != velocity.shape[3]:
        return
    velocity.assign(np.broadcast_to(v, velocity.shape))
    optimizer.iterations.assign(iterations)


class _Budget(Exception):
    """L-BFGS has used its function evaluations."""


def _lbfgs(problem: _Problem, config: Config, steps: int, report: Callable) -> np.ndarray:
    """L-BFGS-B within [0, 1] for ``steps`` function evaluations after the
    first (each one forward and backward pass, like an Adam step); returns
    the last accepted iterate. One image (its line searches are its own)."""
    shape = problem.image.shape
    evaluate = problem.compiled(problem.evaluate_with_gradient)
    accepted = problem.image.numpy()
    count = 0

    def loss_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal count
        if count > steps:
            raise _Budget
        problem.image.assign(x.reshape(shape).astype(np.float32))
        values, gradient = (t.numpy() for t in evaluate())
        report(count, values)
        count += 1
        return float(values[0, 0]), gradient.ravel().astype(np.float64)

    def on_iteration(xk: np.ndarray) -> None:
        nonlocal accepted
        accepted = xk.reshape(shape).astype(np.float32)

    x0 = accepted.ravel().astype(np.float64)
    try:
        result = scipy.optimize.minimize(
            loss_and_gradient, x0, jac=True, method="L-BFGS-B", callback=on_iteration,
            bounds=scipy.optimize.Bounds(np.zeros_like(x0), np.ones_like(x0)),
            # No tolerance stops: the budget of evaluations ends the run.
            options={"maxfun": steps + 1, "maxiter": steps + 1, "maxcor": config.lbfgs_memory, "ftol": 0, "gtol": 0},
        )  # fmt: skip
        accepted = result.x.reshape(shape).astype(np.float32)
    except _Budget:
        pass
    return accepted


class _Run:
    """Bookkeeping for a batch across scales: per job, its history and
    callbacks; timings; the best images."""

    def __init__(self, jobs: list[_Prepared], callback: Callable | None, every: int, t0: float, where: str) -> None:
        self.jobs, self.callback, self.every, self.t0, self.where = jobs, callback, every, t0, where
        self.schedule = jobs[0].config.schedule
        self.total_steps = sum(steps for _, steps in self.schedule)
        self.histories: list[dict[str, list[float]]] = [{} for _ in jobs]
        self.timings: dict[str, float] = {}
        self.step_times: list[float] = []
        self.offset = 0
        self.scale_starts: list[int] = []
        self.stopped: str | None = None
        self.problem: _Problem | None = None
        self.start = self.last = 0.0

    def begin_scale(self, index: int, size: int, problem: _Problem, present: list[Callable]) -> None:
        if self.problem is not None:
            self.offset += self.schedule[index - 1][1]
        else:
            self.start = time.perf_counter()
        self.index, self.size, self.problem, self.present = index, size, problem, present
        self.scale_starts.append(len(self.step_times))
        self.last = time.perf_counter()

    def report(self, k: int, values: np.ndarray) -> None:
        """Record evaluation ``k`` of this scale (``values``: terms x batch);
        call back; stop on NaN."""
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        step = self.offset + k
        for j, (job, history) in enumerate(zip(self.jobs, self.histories)):
            losses = {name: float(v) for name, v in zip(self.problem.names, values[:, j])}
            for name, v in {"step": float(step), "size": float(self.size), "time": now - self.start, **losses}.items():
                history.setdefault(name, []).append(v)
            if not math.isfinite(losses["total"]):
                which = f" in job {job.index}" if len(self.jobs) > 1 else ""
                raise _NonFinite(
                    f"the loss became {losses['total']} at step {step}{which}; kept the best image before it"
                )
            if self.callback is not None and (k % self.every == 0 or k == self.schedule[self.index][1]):
                read = functools.partial(self._read, j)
                self.callback(Progress(step, self.total_steps, losses, now - self.start, self.index, job.index, read))
        self.last = time.perf_counter()

    def _read(self, j: int) -> np.ndarray:
        return self.present[j](self.problem.evaluated[j].numpy())

    def result(self, j: int) -> Result:
        """The `Result` of job ``j`` of the batch."""
        times = self.step_times
        timings = dict(self.timings, first_step=times[0] if times else 0.0)
        # Leave out each scale's first and last evaluation (they compile).
        ends = {*self.scale_starts, *(i - 1 for i in self.scale_starts), len(times) - 1}
        later = [t for i, t in enumerate(times) if i not in ends]
        timings["step"] = statistics.median(later) if later else timings["first_step"]
        timings["total"] = time.perf_counter() - self.t0
        # The best image is the best at the last scale that ran (losses at
        # different sizes do not compare).
        history = self.histories[j]
        sizes = np.array(history.get("size", []))
        totals = np.where(sizes == self.size, history.get("total", []), np.nan) if sizes.size else np.array([])
        best = int(np.nanargmin(totals)) if np.isfinite(totals).any() else None
        return Result(
            image=self.present[j](self.problem.image[j].numpy()),
            best_image=self.present[j](self.problem.best[j].numpy()),
            best_step=int(history["step"][best]) if best is not None else 0,
            best_loss=float(self.problem.best_loss[j].numpy()),
            history=history,
            timings=timings,
            config=self.jobs[j].config,
            sources=self.jobs[j].sources,
            stopped=self.stopped,
            device=self.where,
            adam=self.problem.adam[j] if self.problem.adam else None,
            normalization=self.problem.extractor.normalization,
        )


def _repeatable(config: Config, device: Device) -> Config:
    """With a seed, make the run bit-identical on this machine.

    On CPU it already is (checked with and without XLA). GPU kernels may sum
    in any order, so there TensorFlow's op determinism is turned on, for the
    whole process, and XLA off (it has no deterministic max-pool gradient).
    """
    if config.seed is None or device.kind != "GPU":
        return config
    tf.config.experimental.enable_op_determinism()
    if config.jit_compile:
        warnings.warn("seed on a GPU: deterministic ops on, XLA off, so steps are slower", stacklevel=3)
    return config.replace(jit_compile=False)


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized (bicubic) to ``shape`` and clipped to [0, 1]."""
    if image.shape[:2] == tuple(shape):
        return image
    return tf.image.resize(image, shape, method="bicubic").numpy().clip(0, 1)
