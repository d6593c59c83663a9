"""The engine: compiled programs, kept and reused, one per kind of run.

Compiling a step costs seconds (XLA: 3-6 s at 512 px on a CPU) and leaves
its memory mappings in the process for good: XLA gives none back, even for
a program no one holds, and the kernel allows 65,530. So a program is built
once per key, everything that changes it: the image's shape (and batch),
the layers, the weights, the pooling and normalisation, the precision, the
loss form, the regions' and temporal targets' presence, tiles, the
optimiser (Adam's betas and epsilon are part of its program) and the
device. A later run with a key already seen assigns its start, targets and
weights into the engine's variables (`Engine.reset`) and compiles nothing;
every mode goes through here: Adam and L-BFGS, tiles, float16, batches,
each coarse-to-fine scale, video frames, figures and live runs.

An engine is held by one run at a time (`acquire` ... `Engine.release`): a
second run of the same key at the same moment (a live run and a still in
the studio) gets an engine of its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from nst.base.backend import tf
from nst.base.config import Config, Role, named
from nst.core.features import extractor_for
from nst.core.losses import Targets, Weights
from nst.core.problem import Problem
from nst.core.tiles import TiledProblem

#: Engines kept. Size it for hits: evicting one gives no memory mappings
#: back to XLA (a program's ~12-27 stay), so eviction only bounds the
#: variables (the images, targets and Adam's moments) held.
KEPT = 24
#: The settings that change a compiled program (beside the shapes and the device).
PROGRAM = named(Role.PROGRAM)


class Engine:
    """One problem's compiled functions: its evaluation, its loss and
    gradient, and with Adam, its optimiser and one compiled update."""

    def __init__(self, problem: Problem, config: Config) -> None:
        self.problem = problem
        self.evaluate = problem.compiled(problem.evaluate)
        """The terms at the current images (terms, batch); remembers the best."""
        self.evaluate_with_gradient = problem.compiled(problem.evaluate_with_gradient)
        """The terms and the gradient of the (scaled) total with respect to the pixels."""
        self.optimizer: tf.keras.optimizers.Optimizer | None = None
        self.step: Callable[[], tf.Tensor] | None = None
        """One compiled Adam update (evaluate, step, clip to [0, 1], with
        ``ema`` average): the terms at the image it evaluated."""
        if config.optimizer == "adam":
            self.optimizer, self.step = _adam_program(problem, config)
        self.lock = threading.Lock()
        self.runs = 0
        """How many runs have used it (a run holding it can tell whether another came since)."""
        self.weighed = 0
        """How many times the weights changed during a run (`assign_weights`: L-BFGS starts afresh)."""

    def reset(self, start: np.ndarray, targets: Targets, weights: Weights, config: Config) -> None:
        """A new run: its start, targets and weights; Adam's state zeroed and
        its learning rate set; float16's loss scale back to its start."""
        self.problem.assign(start, targets, weights)
        if self.optimizer is not None:
            for variable in self.optimizer.variables:
                if variable.name.endswith(("_momentum", "_velocity")):
                    variable.assign(tf.zeros_like(variable))
            self.optimizer.iterations.assign(0)
            self.optimizer.learning_rate = config.learning_rate
            if isinstance(self.optimizer, tf.keras.optimizers.LossScaleOptimizer):
                self.optimizer.step_counter.assign(0)
                self.optimizer.inner_optimizer.iterations.assign(0)
        self.runs += 1

    def assign_weights(self, config: Config) -> None:
        """alpha, beta, gamma, w_l and the learning rate of ``config``, read by the next step."""
        self.problem.assign_weights(Weights.of([config]))
        self.weighed += 1
        if self.optimizer is not None:
            self.optimizer.learning_rate = config.learning_rate

    def release(self) -> None:
        """Let the next run of this key have the engine."""
        self.lock.release()


_ENGINES: OrderedDict[tuple, list[Engine]] = OrderedDict()
_GUARD = threading.Lock()


def key(config: Config, strategy: tf.distribute.Strategy, shape: tuple, scene: tuple) -> tuple:
    """What a compiled program depends on: ``config``'s `PROGRAM` settings
    (and the seed of random weights), the image batch's ``shape``, the
    regions and temporal target of the ``scene`` (`nst.core.scene.Scene.shapes`)
    and the strategy that runs it."""
    seed = config.seed if config.weights == "random" else None
    return (tuple(getattr(config, name) for name in PROGRAM), seed, tuple(shape), scene[1:], id(strategy))


def acquire(
    config: Config,
    strategy: tf.distribute.Strategy,
    start: np.ndarray,
    targets: Targets,
    weights: Weights,
    scene: tuple,
) -> Engine:
    """An engine for a run of ``start`` (the batch's starting images) with
    these targets and weights, reset for it and held by the caller until
    `Engine.release`: one kept from an earlier run of the same key, or
    built (and compiled at its first step) now."""
    wanted = key(config, strategy, start.shape, scene)
    with _GUARD:
        engines = _ENGINES.setdefault(wanted, [])
        _ENGINES.move_to_end(wanted)
        engine = next((e for e in engines if e.lock.acquire(blocking=False)), None)
    if engine is None:
        with strategy.scope():
            extractor = extractor_for(config, str(id(strategy)))
        problem_class = TiledProblem if config.tile else Problem
        engine = Engine(problem_class(start, extractor, targets, weights, config, strategy), config)
        engine.lock.acquire()
        with _GUARD:
            engines.append(engine)
            _evict()
    try:
        engine.reset(start, targets, weights, config)
    except BaseException:  # out of memory, Ctrl-C: the engine is free for the next run
        engine.release()
        raise
    return engine


def _evict() -> None:
    """Forget the least recently used engines not in use beyond `KEPT`."""
    while sum(map(len, _ENGINES.values())) > KEPT:
        for wanted, engines in _ENGINES.items():
            free = [e for e in engines if not e.lock.locked()]
            if free:
                engines.remove(free[0])
                if not engines:
                    del _ENGINES[wanted]
                break
        else:
            return


def _adam_program(problem: Problem, config: Config) -> tuple[tf.keras.optimizers.Optimizer, Callable]:
    """Adam for ``problem``: the optimizer (its moments built, its learning
    rate a variable) and one compiled update (evaluate, step, clip to
    [0, 1], and with ``config.ema`` average; returns the terms at the image
    it evaluated)."""
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
            # loss at the start (`nst.core.optimizers.adam`) and doubled after 50
            # good steps.
            optimizer = tf.keras.optimizers.LossScaleOptimizer(optimizer, dynamic_growth_steps=50)
            problem.scale_loss = optimizer.scale_loss
        optimizer.build([problem.image])  # its moment variables now, so the step is traced once

    def update() -> tf.Tensor:
        values, gradient = problem.evaluate_with_gradient()
        optimizer.apply_gradients([(gradient, problem.image)])  # sums the replicas' gradients
        problem.image.assign(tf.clip_by_value(problem.image, 0.0, 1.0))
        if config.ema:
            problem.advance_average()
        return values

    # One compiled step: the losses come back as one small array per step and
    # the images stay on the device unless a callback asks for one.
    return optimizer, problem.compiled(update)
