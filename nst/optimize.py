"""The run: compute the targets once, then optimise the image with Adam.

`stylize` is the one entry point. The image is a `tf.Variable` of pixels in
[0, 1]; each step computes the objective under a `tf.GradientTape`, applies
one Adam update and clips the pixels back into range, all in one compiled
`tf.function` (XLA by default). The lowest-loss image seen is kept on the
device as the run goes, so stopping early (Ctrl-C, a NaN) loses nothing.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from PIL import Image

from nst.config import Config, preset
from nst.features import get_extractor
from nst.images import ImageSource, load_image, save_image, to_pil
from nst.losses import make_targets, objective


@dataclass(frozen=True)
class Progress:
    """What a callback receives: where the run is and how it is doing."""

    step: int
    """Adam updates done so far (0 before the first)."""
    steps: int
    """Updates the run will do in all."""
    losses: dict[str, float]
    """The objective's terms at the current image (see `nst.losses.objective`)."""
    elapsed: float
    """Seconds since the first step started."""
    _read_image: Callable[[], np.ndarray] = field(repr=False)

    def image(self) -> np.ndarray:
        """The current image, (height, width, 3) floats in [0, 1]. Copies it
        from the device, so the loop pays only when a callback asks."""
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
    best_loss: float
    history: dict[str, list[float]]
    """Per evaluated step, each term of the objective plus 'step' and 'time' (s)."""
    timings: dict[str, float]
    """Seconds: 'setup' (images, model, targets), 'first_step' (includes
    compilation), 'step' (median of the others), 'total'."""
    config: Config
    sources: dict[str, str]
    """What the content and style images were (path, URL or kind of object)."""
    stopped: str | None = None
    """Why the run ended early ('interrupted', or a NaN message), else None."""

    def metadata(self) -> dict[str, Any]:
        """What a saved PNG records so the result can be reproduced."""
        return {
            "settings": self.config.to_dict(),
            **self.sources,
            "start_loss": self.history["total"][0] if self.history.get("total") else None,
            "best_step": self.best_step,
            "best_loss": self.best_loss,
            "steps_done": int(self.history["step"][-1]) if self.history.get("step") else 0,
            "stopped": self.stopped,
        }

    def save(self, path: str | os.PathLike, *, which: str = "best") -> Path:
        """Write the best (or 'final') image as a PNG with the settings inside."""
        return save_image(path, self.best_image if which == "best" else self.image, self.metadata())


def stylize(
    content: ImageSource,
    style: ImageSource,
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    **overrides: Any,
) -> Result:
    """Render ``content`` in the style of ``style`` (Gatys et al. 2016).

    Args:
        content, style: a path, URL, ``"sample:NAME"``, PIL image or array.
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
    t0 = time.perf_counter()

    # 1. Images: the output has the content image's size; the style image is
    #    brought to the same longest side (its Gram targets are rescaled to
    #    the output's number of positions).
    content_image = load_image(content, size=config.size)
    style_image = load_image(style, size=config.size)
    sources = {"content": _describe(content), "style": _describe(style)}

    # 2. Features and targets, once per run: P at the content layers and the
    #    Gram matrices A at the style layers.
    extractor = get_extractor(config.style_layers, config.content_layers, config.weights, config.seed)
    config = config.replace(weights=extractor.weights)
    targets = make_targets(extractor(content_image[None]), extractor(style_image[None]), config)

    # 3. The image being optimised, the best one seen and its loss.
    image = tf.Variable(_initial_image(config, content_image, style_image)[None], name="image")
    best = tf.Variable(image.read_value(), trainable=False, name="best_image")
    best_loss = tf.Variable(tf.fill([1], math.inf), trainable=False, name="best_loss")
    optimizer = tf.keras.optimizers.Adam(
        learning_rate=config.learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon
    )
    optimizer.build([image])  # its moment variables now, so the step is traced once

    def evaluate() -> dict[str, tf.Tensor]:
        """The objective at the current image; remembers it if it is the best."""
        losses = objective(image, extractor(image), targets, config)
        improved = losses["total"] < best_loss
        best.assign(tf.where(improved[:, None, None, None], image, best))
        best_loss.assign(tf.where(improved, losses["total"], best_loss))
        return losses

    @tf.function(jit_compile=config.jit_compile)
    def step() -> dict[str, tf.Tensor]:
        """One Adam update: loss, gradient with respect to the pixels, clip."""
        with tf.GradientTape() as tape:
            losses = evaluate()
        gradient = tape.gradient(losses["total"], image)
        optimizer.apply_gradients([(gradient, image)])
        image.assign(tf.clip_by_value(image, 0.0, 1.0))
        return losses

    final_evaluation = tf.function(evaluate, jit_compile=config.jit_compile)
    history: dict[str, list[float]] = {}
    timings = {"setup": time.perf_counter() - t0}
    step_times: list[float] = []
    stopped = None
    start = time.perf_counter()

    def record(k: int, losses: dict[str, tf.Tensor]) -> dict[str, float]:
        values = {name: float(v[0]) for name, v in losses.items()}
        for name, v in {"step": float(k), "time": time.perf_counter() - start, **values}.items():
            history.setdefault(name, []).append(v)
        return values

    # 4. Optimise. Entry k of the history is the loss after k updates.
    try:
        for k in range(config.steps + 1):
            t = time.perf_counter()
            losses = step() if k < config.steps else final_evaluation()
            values = record(k, losses)
            step_times.append(time.perf_counter() - t)
            if not math.isfinite(values["total"]):
                stopped = f"the loss became {values['total']} at step {k}; kept the best image before it"
                break
            if callback is not None and (k % callback_every == 0 or k == config.steps):
                callback(Progress(k, config.steps, values, time.perf_counter() - start, lambda: image.numpy()[0]))
    except KeyboardInterrupt:
        stopped = "interrupted"

    timings["first_step"] = step_times[0] if step_times else 0.0
    timings["step"] = statistics.median(step_times[1:-1]) if len(step_times) > 2 else timings["first_step"]
    timings["total"] = time.perf_counter() - t0
    totals = history.get("total", [math.inf])
    best_step = int(np.nanargmin(totals)) if np.isfinite(totals).any() else 0
    return Result(
        image=image.numpy()[0],
        best_image=best.numpy()[0],
        best_step=best_step,
        best_loss=float(best_loss.numpy()[0]),
        history=history,
        timings=timings,
        config=config,
        sources=sources,
        stopped=stopped,
    )


def _initial_image(config: Config, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    """The starting image: the content, the style resized to the output, or
    uniform noise from ``config.seed``."""
    if config.init == "content":
        return content
    if config.init == "style":
        return tf.image.resize(style, content.shape[:2], method="bicubic").numpy().clip(0, 1)
    return np.random.default_rng(config.seed).uniform(0, 1, content.shape).astype(np.float32)


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return f"<{type(source).__name__}>"
