"""Optimisers over an engine (`nst.core.engine`): Adam and L-BFGS.

With Adam, each step computes the objective under a `tf.GradientTape`,
applies one update and clips the pixels back into range, all in one
compiled step (the engine's). With L-BFGS (`LBFGS`, a projected L-BFGS
stepped by its caller), each step is one evaluation of the engine's
compiled loss and gradient, and the pixels stay in [0, 1] as bounds. Adam's state can be recorded in the output PNG
(`adam_record`) and taken up again by a later run (`restore_adam`).

Coarse to fine, each scale starts a fresh Adam unless
``config.scale_warm_start`` carries the moments over, resized
(`adam_moments`, `carry_adam`; crowsonkb's). With the report's losses,
carrying them was measured worse than a fresh Adam (BENCHMARKS.md, "Numbers behind the code's choices"): the upsampled
start is far from the new scale's optimum, where a fresh Adam's first steps
of about the learning rate everywhere are what it needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from nst.base.backend import tf
from nst.core.engine import Engine
from nst.core.moments import expand_moments, pack_moments, unpack_moments
from nst.io.images import ImageError, read_metadata


def adam(
    engine: Engine,
    steps: int,
    report: Callable[[int, np.ndarray], Any],
    *,
    first: int = 0,
    between: Callable[[int], bool] | None = None,
    average: bool = False,
) -> bool:
    """Adam updates from step ``first`` up to ``steps``, each clipped to
    [0, 1]; ``report(k, terms)`` after each evaluation (entry k is the loss
    after k updates; the last is an evaluation of the image reached), and
    ``between(k)`` before each, which stops the run by returning False
    (`nst.run.live` steers there). With ``average`` (``ema`` set) the images
    become the average of the iterates before the last evaluation.
    Returns whether all steps were done."""
    optimizer = engine.optimizer
    scaled = isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer)
    if first == 0 and scaled:  # a scaled loss of about 2^26 keeps the gradients well inside float16's range
        start = np.max(engine.evaluate().numpy()[0])
        optimizer.dynamic_scale.assign(2.0 ** np.floor(26 - np.log2(max(start, 1e-30))))
    for k in range(first, steps + 1):
        if between is not None and not between(k):
            return False
        if k == steps and average:  # the average is the result: the last evaluation is its
            engine.problem.image.assign(engine.problem.average)
        report(k, (engine.step() if k < steps else engine.evaluate()).numpy())
    return True


def adam_record(engine: Engine) -> list[dict[str, Any]] | None:
    """Per image of the batch, what `restore_adam` needs: the step count and
    the second moments, pooled (see `nst.core.moments.pack_moments`); None where
    there is nothing to record (L-BFGS, or float16's scaled moments)."""
    optimizer = engine.optimizer
    if optimizer is None or isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer):
        return None
    iterations = int(optimizer.iterations.numpy())
    return [pack_moments(v, iterations) for v in _moment(optimizer, "_velocity").numpy()]


def adam_moments(engine: Engine) -> tuple[int, np.ndarray, np.ndarray] | None:
    """Adam's step count and first and second moments (batch, height,
    width, channels), for the next scale (`carry_adam`); None where there
    are none to carry (L-BFGS, or float16's scaled moments)."""
    optimizer = engine.optimizer
    if optimizer is None or isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer):
        return None
    first, second = (_moment(optimizer, name).numpy() for name in ("_momentum", "_velocity"))
    return int(optimizer.iterations.numpy()), first, second


def carry_adam(engine: Engine, moments: tuple[int, np.ndarray, np.ndarray] | None) -> None:
    """Go on with the previous scale's Adam (`adam_moments`), its moments
    resized to this scale's images (crowsonkb's: the first bicubic, the
    second bilinear and at least 0) and its step count kept."""
    optimizer = engine.optimizer
    if moments is None or optimizer is None or isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer):
        return
    iterations, first, second = moments
    size = engine.problem.image.shape[1:3]
    _moment(optimizer, "_momentum").assign(tf.image.resize(first, size, "bicubic"))
    _moment(optimizer, "_velocity").assign(tf.nn.relu(tf.image.resize(second, size, "bilinear")))
    optimizer.iterations.assign(iterations)


def restore_adam(engine: Engine, init: str) -> None:
    """Go on with the Adam state recorded in the PNG ``init`` (see
    `Config.adam_warm_start`): its second moments, first moments 0 (they
    forget within ~10 steps anyway). A PNG without a record, or one of
    another size, leaves Adam fresh; so does a damaged record, with a warning
    (the command line refuses one before the run), and so do L-BFGS and
    float16's scaled loss (its gradients are scaled)."""
    optimizer = engine.optimizer
    if optimizer is None or isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer):
        return
    try:
        record = read_metadata(init).get("adam")
        if not record:
            return
        iterations, pool, pooled = unpack_moments(record, init)
    except ImageError as e:
        warnings.warn(f"{e} Adam starts afresh.", stacklevel=3)
        return
    velocity = _moment(optimizer, "_velocity")
    v = expand_moments(pool, pooled, *velocity.shape[1:3])
    if v is None or v.shape[2] != velocity.shape[3]:
        return
    velocity.assign(np.broadcast_to(v, velocity.shape))
    optimizer.iterations.assign(iterations)


def _moment(optimizer: tf.keras.optimizers.Optimizer, name: str) -> tf.Variable:
    (variable,) = [v for v in optimizer.variables if v.name.endswith(name)]
    return variable


class LBFGS:
    """L-BFGS kept in the box [0, 1], one evaluation a step: `point` is where
    to evaluate next, `tell` takes that evaluation and moves on.

    A projected L-BFGS: the direction comes from the last ``memory``
    curvature pairs (the two-loop recursion) over the pixels free to move
    (a pixel at a bound whose gradient pushes it out stays put), the step is
    cut back until it lowers the objective enough (Armijo's condition, with
    a quadratic guess for the cut), and the image is clipped into the box.
    Nothing drives it but its caller's loop, so a run can stop, be steered
    or go on between any two evaluations (`restart` forgets the curvature
    when the objective's weights change)."""

    def __init__(self, image: np.ndarray, memory: int) -> None:
        self.memory = memory
        self.shape = image.shape
        self.x = image.astype(np.float64).ravel()
        """The last accepted iterate (flattened)."""
        self.trial = self.x.copy()
        self.f: float | None = None
        self.g = np.zeros_like(self.x)
        self.pairs: list[tuple[np.ndarray, np.ndarray, float]] = []
        self.direction, self.t, self.slope = np.zeros_like(self.x), 0.0, 0.0
        self.weighed: int | None = None
        """The engine's weights (`Engine.weighed`) its curvature belongs to."""

    @property
    def point(self) -> np.ndarray:
        """The image to evaluate next."""
        return self.trial.reshape(self.shape).astype(np.float32)

    @property
    def accepted(self) -> np.ndarray:
        """The last accepted image."""
        return self.x.reshape(self.shape).astype(np.float32)

    def restart(self) -> None:
        """Forget the curvature and evaluate the accepted image afresh (the objective changed)."""
        self.trial, self.f, self.pairs = self.x.copy(), None, []

    def tell(self, f: float, gradient: np.ndarray) -> None:
        """The objective and its gradient at `point`."""
        g = gradient.astype(np.float64).ravel()
        if self.f is None:
            self.x, self.f, self.g = self.trial, f, g
        elif np.isfinite(f) and f <= self.f + 1e-4 * self.slope:  # enough of a fall: accepted
            s, y = self.trial - self.x, g - self.g
            sy = float(s @ y)
            if sy > 1e-10 * np.sqrt(float(s @ s) * float(y @ y)):  # a pair that keeps the inverse Hessian positive
                self.pairs = [*self.pairs, (s, y, 1.0 / sy)][-self.memory :]
            self.x, self.f, self.g = self.trial, f, g
        else:  # too far: a shorter step along the same direction
            drop = f - self.f - self.slope if np.isfinite(f) else np.inf
            guess = -self.slope * self.t / (2 * drop) if drop > 0 else 0.5 * self.t
            self.t = min(max(guess, 0.1 * self.t), 0.5 * self.t)
            self._propose()
            return
        self._direction()

    def _direction(self) -> None:
        free = ~(((self.x <= 0) & (self.g > 0)) | ((self.x >= 1) & (self.g < 0)))
        q = np.where(free, self.g, 0.0)
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * float(s @ q)
            q -= alpha * y
            alphas.append(alpha)
        if self.pairs:
            s, y, rho = self.pairs[-1]
            q *= 1.0 / (rho * float(y @ y))
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            q += (alpha - rho * float(y @ q)) * s
        d = -np.where(free, q, 0.0)
        if float(d @ self.g) >= 0:  # not a descent direction: forget the curvature, follow the gradient
            self.pairs, d = [], -np.where(free, self.g, 0.0)
        self.direction = d
        # The first step moves the image by at most 1/255 of the range a pixel; later ones trust the curvature.
        self.t = 1.0 if self.pairs else 1.0 / max(float(np.sqrt(d @ d)), 1e-30)
        self._propose()

    def _propose(self) -> None:
        self.trial = np.clip(self.x + self.t * self.direction, 0.0, 1.0)
        self.slope = float(self.g @ (self.trial - self.x))


def lbfgs(
    engine: Engine,
    state: LBFGS,
    steps: int,
    report: Callable[[int, np.ndarray], Any],
    *,
    first: int = 0,
    between: Callable[[int], bool] | None = None,
) -> bool:
    """L-BFGS evaluations ``first`` up to ``steps`` from ``state`` (each one
    forward and backward pass, like an Adam step; ``report`` and ``between``
    as for `adam`). Its curvature belongs to one objective: when the weights
    change between evaluations (`Engine.assign_weights`), it starts afresh
    from its last accepted image. The problem's image is left at that image.
    Returns whether all steps were done. One image (its line searches are
    its own)."""
    problem, done = engine.problem, True
    for k in range(first, steps + 1):
        if between is not None and not between(k):
            done = False
            break
        if engine.weighed != state.weighed:
            state.restart()
            state.weighed = engine.weighed
        problem.image.assign(state.point)
        values, gradient = (t.numpy() for t in engine.evaluate_with_gradient())
        report(k, values)
        state.tell(float(values[0, 0]), gradient)
    problem.image.assign(state.accepted)
    return done
