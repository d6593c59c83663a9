"""The run: compute the targets once per scale, then optimise the image.

`stylize` is the one entry point. The image is a `tf.Variable` of pixels in
[0, 1]. With Adam, each step computes the objective under a
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

import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize
import tensorflow as tf
from PIL import Image

from nst import color
from nst.config import Config, preset
from nst.device import Device
from nst.device import current as current_device
from nst.features import Extractor, get_extractor
from nst.images import ImageError, ImageSource, describe, load_image, require_side, save_image, to_pil
from nst.losses import Targets, make_targets, objective
from nst.resources import check_memory, estimate_bytes


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
        }

    def save(self, path: str | os.PathLike, *, which: str = "best") -> Path:
        """Write the best (or 'final') image as a PNG with the settings inside."""
        return save_image(path, self.best_image if which == "best" else self.image, self.metadata())


def stylize(
    content: ImageSource,
    style: ImageSource | Sequence[ImageSource],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
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
        **overrides: any `Config` field, e.g. ``steps=200, style_weight=1e4``;
            ``preset="tutorial"`` starts from that preset instead of ``config``.

    Returns:
        A `Result`. Ctrl-C ends the run early and still returns one.
    """
    if "preset" in overrides:
        if config is not None:
            raise ValueError("give either config or preset, not both")
        config = preset(overrides.pop("preset"), **overrides)
    else:
        config = (config or Config()).replace(**overrides)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    blend = config.blend(len(styles))
    t0 = time.perf_counter()
    device = current_device(config.device)
    config = _repeatable(config, device)
    with device.strategy.scope():
        extractor = get_extractor(
            config.style_layers, config.content_layers, config.weights, config.seed, config.pooling, device.kind
        )
    config = config.replace(weights=extractor.weights)
    sources = {
        "content": describe(content),
        "style": " + ".join(describe(s) for s in styles),
        "styles": [describe(s) for s in styles],  # what --resume reads back
    }
    run = _Run(config, callback, callback_every, t0, device)
    image = None
    try:
        for index, (size, steps) in enumerate(config.schedule):
            # 1. Images at this scale: the output has the content image's
            #    size; each style image is brought to size * style_scale (its
            #    Gram targets are rescaled to the output's number of positions).
            scene = _Scene.load(content, styles, config, size)
            if device.kind == "CPU":  # host memory; a GPU's out-of-memory error is caught below
                check_memory(config, *scene.content.shape[:2])
            start = scene.start(config) if image is None else _resize(image, scene.content.shape[:2])
            # 2. Targets, once per scale: P at the content layers and the
            #    blend of the styles' Gram matrices A at the style layers.
            targets = _blend_targets(extractor, scene, blend, config)
            if index == 0:
                run.timings["setup"] = time.perf_counter() - t0
            # 3. Optimise; the result starts the next scale.
            problem = _Problem(start, extractor, targets, config, device.strategy)
            run.begin_scale(index, size, problem, scene.present)
            image = (_adam if config.optimizer == "adam" else _lbfgs)(problem, config, steps, run.report)
    except KeyboardInterrupt:
        if run.problem is None:  # nothing made yet: there is nothing to return
            raise
        run.stopped = "interrupted"
    except _NonFinite as e:
        run.stopped = str(e)
    except tf.errors.ResourceExhaustedError:
        shape = scene.content.shape
        raise MemoryError(
            f"out of memory on {device} for a {shape[1]} x {shape[0]} output (about "
            f"{estimate_bytes(config, *shape[:2]) / 2**30:.1f} GiB needed): use a smaller --size, or coarse to "
            f"fine (--scales) on a machine with more memory."
        ) from None
    return run.result(sources)


class _Scene:
    """The inputs at one scale, as the optimiser sees them: full colour, or
    luminance only (one channel) when preserving colour that way."""

    def __init__(self, content: np.ndarray, styles: list[np.ndarray], rgb: np.ndarray, mode: str | None) -> None:
        self.content, self.styles, self.rgb, self.mode = content, styles, rgb, mode

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
        """The starting image (see ``Config.init``), in the optimiser's channels."""
        shape = self.content.shape
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


def _blend_targets(extractor: Extractor, scene: _Scene, blend: tuple[float, ...], config: Config) -> Targets:
    """Targets with Gram matrices ``A = sum_k b_k A_k`` over the style images."""
    content_features = extractor(scene.content[None])
    per_style = [make_targets(content_features, extractor(s[None]), config) for s in scene.styles]
    grams = [sum(b * t.style[i] for b, t in zip(blend, per_style)) for i in range(len(config.style_layers))]
    return Targets(content=per_style[0].content, style=grams)


class _NonFinite(ArithmeticError):
    """The loss became NaN or infinite."""


class _Problem:
    """The image being optimised at one scale, its objective, and the best
    image seen with its loss (tracked on the device)."""

    def __init__(
        self,
        start: np.ndarray,
        extractor: Extractor,
        targets: Targets,
        config: Config,
        strategy: tf.distribute.Strategy,
    ) -> None:
        self.strategy = strategy
        with strategy.scope():  # on the device that runs the steps
            self.image = tf.Variable(start[None], name="image")
            self.best = tf.Variable(start[None], trainable=False, name="best_image")
            # The image the latest losses belong to (Adam moves `image` on
            # after evaluating it); what a callback sees.
            self.evaluated = tf.Variable(start[None], trainable=False, name="evaluated_image")
            self.best_loss = tf.Variable(tf.fill([1], math.inf), trainable=False, name="best_loss")
        self.extractor, self.targets, self.config = extractor, targets, config

    def run(self, fn: Callable) -> Any:
        """``fn()`` on the device, through the strategy (one replica)."""
        results = self.strategy.run(fn)
        return tf.nest.map_structure(lambda x: self.strategy.experimental_local_results(x)[0], results)

    def evaluate(self) -> dict[str, tf.Tensor]:
        """The objective at the current image; remembers it if it is the best."""
        losses = objective(self.image, self.extractor(self.image), self.targets, self.config)
        self.evaluated.assign(self.image)
        improved = losses["total"] < self.best_loss
        self.best.assign(tf.where(improved[:, None, None, None], self.image, self.best))
        self.best_loss.assign(tf.where(improved, losses["total"], self.best_loss))
        return losses

    def evaluate_with_gradient(self) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """The objective and its gradient with respect to the pixels."""
        with tf.GradientTape() as tape:
            losses = self.evaluate()
        return losses, tape.gradient(losses["total"], self.image)


def _adam(problem: _Problem, config: Config, steps: int, report: Callable) -> np.ndarray:
    """``steps`` Adam updates, each clipped to [0, 1]; the image after the last."""
    with problem.strategy.scope():
        optimizer = tf.keras.optimizers.Adam(
            learning_rate=config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon
        )
        optimizer.build([problem.image])  # its moment variables now, so the step is traced once

    def update() -> dict[str, tf.Tensor]:
        losses, gradient = problem.evaluate_with_gradient()
        optimizer.apply_gradients([(gradient, problem.image)])
        problem.image.assign(tf.clip_by_value(problem.image, 0.0, 1.0))
        return losses

    step = tf.function(lambda: problem.run(update), jit_compile=config.jit_compile)
    final_evaluation = tf.function(lambda: problem.run(problem.evaluate), jit_compile=config.jit_compile)
    # Entry k of the history is the loss after k updates.
    for k in range(steps + 1):
        report(k, step() if k < steps else final_evaluation())
    return problem.image.numpy()[0]


class _Budget(Exception):
    """L-BFGS has used its function evaluations."""


def _lbfgs(problem: _Problem, config: Config, steps: int, report: Callable) -> np.ndarray:
    """L-BFGS-B within [0, 1] for ``steps`` function evaluations after the
    first (each one forward and backward pass, like an Adam step); returns
    the last accepted iterate."""
    shape = problem.image.shape
    evaluate = tf.function(lambda: problem.run(problem.evaluate_with_gradient), jit_compile=config.jit_compile)
    accepted = problem.image.numpy()
    count = 0

    def loss_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal count
        if count > steps:
            raise _Budget
        problem.image.assign(x.reshape(shape).astype(np.float32))
        losses, gradient = evaluate()
        report(count, losses)
        count += 1
        return float(losses["total"][0]), gradient.numpy().ravel().astype(np.float64)

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
    return accepted[0]


class _Run:
    """Bookkeeping across scales: history, timings, callbacks, the best image."""

    def __init__(self, config: Config, callback: Callable | None, every: int, t0: float, device: Device) -> None:
        self.config, self.callback, self.every, self.t0, self.device = config, callback, every, t0, device
        self.total_steps = sum(steps for _, steps in config.schedule)
        self.history: dict[str, list[float]] = {}
        self.timings: dict[str, float] = {}
        self.step_times: list[float] = []
        self.offset = 0
        self.scale_starts: list[int] = []
        self.stopped: str | None = None
        self.problem: _Problem | None = None
        self.start = self.last = 0.0

    def begin_scale(self, index: int, size: int, problem: _Problem, present: Callable) -> None:
        if self.problem is not None:
            self.offset += self.config.schedule[index - 1][1]
        else:
            self.start = time.perf_counter()
        self.index, self.size, self.problem, self.present = index, size, problem, present
        self.scale_starts.append(len(self.step_times))
        self.last = time.perf_counter()

    def report(self, k: int, losses: dict[str, tf.Tensor]) -> None:
        """Record evaluation ``k`` of this scale; call back; stop on NaN."""
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        values = {name: float(v[0]) for name, v in losses.items()}
        step = self.offset + k
        for name, v in {"step": float(step), "size": float(self.size), "time": now - self.start, **values}.items():
            self.history.setdefault(name, []).append(v)
        if not math.isfinite(values["total"]):
            raise _NonFinite(f"the loss became {values['total']} at step {step}; kept the best image before it")
        scale_steps = self.config.schedule[self.index][1]
        if self.callback is not None and (k % self.every == 0 or k == scale_steps):
            read = lambda: self.present(self.problem.evaluated.numpy()[0])
            self.callback(Progress(step, self.total_steps, values, now - self.start, self.index, read))
        self.last = time.perf_counter()

    def result(self, sources: dict[str, str]) -> Result:
        times = self.step_times
        self.timings["first_step"] = times[0] if times else 0.0
        # Leave out each scale's first and last evaluation (they compile).
        ends = {*self.scale_starts, *(i - 1 for i in self.scale_starts), len(times) - 1}
        later = [t for i, t in enumerate(times) if i not in ends]
        self.timings["step"] = statistics.median(later) if later else self.timings["first_step"]
        self.timings["total"] = time.perf_counter() - self.t0
        # The best image is the best at the last scale that ran (losses at
        # different sizes do not compare).
        sizes = np.array(self.history.get("size", []))
        totals = np.where(sizes == self.size, self.history.get("total", []), np.nan) if sizes.size else np.array([])
        best = int(np.nanargmin(totals)) if np.isfinite(totals).any() else None
        problem = self.problem
        return Result(
            image=self.present(problem.image.numpy()[0]),
            best_image=self.present(problem.best.numpy()[0]),
            best_step=int(self.history["step"][best]) if best is not None else 0,
            best_loss=float(problem.best_loss.numpy()[0]),
            history=self.history,
            timings=self.timings,
            config=self.config,
            sources=sources,
            stopped=self.stopped,
            device=str(self.device),
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
