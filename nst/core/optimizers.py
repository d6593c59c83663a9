"""Optimisers over an engine (`nst.core.engine`): Adam and L-BFGS.

With Adam, each step computes the objective under a `tf.GradientTape`,
applies one update and clips the pixels back into range, all in one
compiled step (the engine's). With L-BFGS, SciPy's L-BFGS-B drives the
engine's compiled loss-and-gradient function and keeps the pixels in
[0, 1] as bounds. Adam's state can be recorded in the output PNG
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
import scipy.optimize

from nst.base.backend import tf
from nst.base.config import Config
from nst.core.engine import Engine
from nst.core.moments import expand_moments, pack_moments, unpack_moments
from nst.io.images import ImageError, read_metadata


def adam(
    engine: Engine,
    config: Config,
    steps: int,
    report: Callable[[int, np.ndarray], Any],
    *,
    first: int = 0,
    between: Callable[[int], bool] | None = None,
) -> bool:
    """Adam updates from step ``first`` up to ``steps``, each clipped to
    [0, 1]; ``report(k, terms)`` after each evaluation (entry k is the loss
    after k updates; the last is an evaluation of the image reached), and
    ``between(k)`` before each, which stops the run by returning False
    (`nst.run.live` steers there). With ``config.ema`` the images become the
    average of the iterates before the last evaluation (`Problem.advance_average`).
    Returns whether all steps were done."""
    optimizer = engine.optimizer
    scaled = isinstance(optimizer, tf.keras.optimizers.LossScaleOptimizer)
    if first == 0 and scaled:  # a scaled loss of about 2^26 keeps the gradients well inside float16's range
        start = np.max(engine.evaluate().numpy()[0])
        optimizer.dynamic_scale.assign(2.0 ** np.floor(26 - np.log2(max(start, 1e-30))))
    for k in range(first, steps + 1):
        if between is not None and not between(k):
            return False
        if k == steps and config.ema:  # the average is the result: the last evaluation is its
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


class _Budget(Exception):
    """L-BFGS has used its function evaluations."""


class _Stop(Exception):
    """The run was asked to stop (`nst.run.live`)."""


class _Changed(Exception):
    """The objective's weights changed (`nst.run.live`): L-BFGS starts afresh."""


def lbfgs(
    engine: Engine,
    config: Config,
    steps: int,
    report: Callable[[int, np.ndarray], Any],
    *,
    first: int = 0,
    between: Callable[[int], bool] | None = None,
) -> tuple[np.ndarray, bool]:
    """L-BFGS-B within [0, 1], evaluations ``first`` up to ``steps`` (each
    one forward and backward pass, like an Adam step; ``report`` and
    ``between`` as for `adam`). Its line searches and curvature pairs
    assume one objective: when the weights change between evaluations
    (`Engine.assign_weights`), it starts afresh from the last accepted
    iterate. Returns that iterate and whether all steps were done. One image
    (its line searches are its own)."""
    problem = engine.problem
    shape = problem.image.shape
    accepted = problem.image.numpy()
    count, weighed = first, engine.weighed

    def loss_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal count
        if count > steps:
            raise _Budget
        if between is not None and not between(count):
            raise _Stop
        if engine.weighed != weighed:
            raise _Changed
        problem.image.assign(x.reshape(shape).astype(np.float32))
        values, gradient = (t.numpy() for t in engine.evaluate_with_gradient())
        report(count, values)
        count += 1
        return float(values[0, 0]), gradient.ravel().astype(np.float64)

    def on_iteration(xk: np.ndarray) -> None:
        nonlocal accepted
        accepted = xk.reshape(shape).astype(np.float32)

    while True:
        x0 = accepted.ravel().astype(np.float64)
        try:
            result = scipy.optimize.minimize(
                loss_and_gradient,
                x0,
                jac=True,
                method="L-BFGS-B",
                callback=on_iteration,
                bounds=scipy.optimize.Bounds(np.zeros_like(x0), np.ones_like(x0)),
                # No tolerance stops: the budget of evaluations ends the run.
                options={
                    "maxfun": steps + 1,
                    "maxiter": steps + 1,
                    "maxcor": config.lbfgs_memory,
                    "ftol": 0,
                    "gtol": 0,
                },
            )
            return result.x.reshape(shape).astype(np.float32), True
        except _Budget:
            return accepted, True
        except _Stop:
            return accepted, False
        except _Changed:
            weighed = engine.weighed
