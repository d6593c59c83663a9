"""The loss and its gradient for a batch of images: the interface every
optimiser works through (`nst.core.optimizers`), computed on the whole image
here and tile by tile in `nst.core.tiles` (`TiledProblem`, the same interface).

A problem holds its state in variables: the images, the best image seen
for each with its loss (with ``config.ema``, the average of the iterates;
kept on the device as the run goes, so stopping early loses nothing), the
targets and the weights. Its compiled functions read them, so a new run
of the same shape assigns its own start, targets and weights (`assign`)
and compiles nothing (`nst.core.engine`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from nst.base.backend import tf
from nst.base.config import Config
from nst.core.features import Extractor
from nst.core.losses import Objective, Targets, Weights


def compile_step(fn: Callable, *args: Any, jit_compile: bool) -> Callable:
    """``fn(*args)`` as a `tf.function` of its own, compiled once for its
    problem's variables (`nst.core.engine` keeps it for every later run of that
    shape). TensorFlow counts traces by Python code object, so lambdas here
    would share one count across engines and it would warn of retracing
    from the fifth; a partial has no code object: each counts alone."""
    return tf.function(functools.partial(fn, *args), jit_compile=jit_compile, autograph=False)


class EMA:
    """The bias-corrected exponential moving average of a batch of images
    (crowsonkb's, with Adam's bias correction), in variables that compiled
    steps update: ``m = d m + (1 - d) x``, started at ``(1 - d) x_0``, and the
    average ``m / (1 - d^(k+1))``, in which the weights of x_0 ... x_k sum to
    1. An image that is not finite is left out. Made in the strategy's scope
    (replicas write equal values: the first replica's are taken)."""

    def __init__(self, start: np.ndarray, decay: float) -> None:
        self.decay = decay
        first = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.average = tf.Variable(start, trainable=False, name="average_image", aggregation=first)
        self._moving = tf.Variable(start * (1.0 - decay), trainable=False, aggregation=first)
        # The weight that the start still has in the sum (1 - it is Adam's bias correction).
        self._start_weight = tf.Variable(
            tf.fill([len(start), 1, 1, 1], float(decay)), trainable=False, aggregation=first
        )

    def reset(self, start: np.ndarray) -> None:
        """Start again from ``start``."""
        self.average.assign(start)
        self._moving.assign(start * (1.0 - self.decay))
        self._start_weight.assign(tf.fill([len(start), 1, 1, 1], float(self.decay)))

    def update(self, images: tf.Tensor) -> None:
        """Take ``images`` into the average."""
        d = self.decay
        moving = d * self._moving + (1.0 - d) * images
        finite = tf.reduce_all(tf.math.is_finite(moving), axis=[1, 2, 3], keepdims=True)
        self._moving.assign(tf.where(finite, moving, self._moving))
        self._start_weight.assign(tf.where(finite, self._start_weight * d, self._start_weight))
        self.average.assign(self._moving / (1.0 - self._start_weight))


class Problem:
    """The batch of images being optimised at one scale, its objective, and
    the best image seen for each with its loss (with ``config.ema``, the
    average of the iterates), tracked on the device.

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
            self.ema = EMA(start, config.ema)
            """With ``config.ema``: the moving average of the iterates (`advance_average`)."""
            # Targets and weights are variables too, read by the compiled
            # steps: a live run (`nst.run.live`) changes the weights between
            # steps, and a new run on the same graph assigns its own.
            variable = functools.partial(tf.Variable, trainable=False, aggregation=first)
            self.targets = targets.map(variable)
            self.weights = Weights(*(variable(w) for w in weights))
        self.extractor, self.config = extractor, config
        self.objective = Objective.of(config)
        """What it minimises (`nst.core.losses.Objective`)."""
        self.names: list[str] = []
        """The objective's terms, in the order `evaluate` stacks them (known once traced)."""
        self.scale_loss: Callable[[tf.Tensor], tf.Tensor] = tf.identity
        """What the total is multiplied by before differentiating: float16's
        loss scale (`nst.core.optimizers`), applied by whole-image and tiled
        problems alike."""
        # One replica: the whole step is one program, compiled with XLA if the path says so (``self.jit``).
        # Several: XLA cannot span the replicas' devices, so each replica's
        # VGG19 pass and gradient are compiled, and the gathering and the
        # update between replicas run as a graph around them.
        self.jit = config.jit_compile and strategy.num_replicas_in_sync == 1
        if strategy.num_replicas_in_sync > 1:
            self._compiled_local = compile_step(self._local, jit_compile=config.jit_compile)
            self._compiled_gradient = compile_step(self._local_with_gradient, jit_compile=config.jit_compile)
        else:
            self._compiled_local, self._compiled_gradient = self._local, self._local_with_gradient

    def assign(self, start: np.ndarray, targets: Targets, weights: Weights) -> None:
        """A new run on this problem's compiled functions: its start, targets
        and weights, and no best image yet."""
        for variable in (self.image, self.best, self.evaluated):
            variable.assign(start)
        self.ema.reset(start)
        self.best_loss.assign(tf.fill([self.batch], math.inf))
        for variable, value in zip(tf.nest.flatten(self.targets), tf.nest.flatten(targets)):
            variable.assign(value)
        self.assign_weights(weights)

    def assign_weights(self, weights: Weights) -> None:
        """alpha, beta, gamma and w_l, read by the next evaluation."""
        for variable, value in zip(self.weights, weights):
            variable.assign(value)

    def compiled(self, fn: Callable) -> Callable:
        """``fn`` run through the strategy (`run`), as one compiled step."""
        return compile_step(self.run, fn, jit_compile=self.jit)

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
        losses = self.objective(image, self.extractor(image), targets, weights)
        self.names = list(losses)
        return tf.stack(list(losses.values())), tf.reduce_sum(losses["total"])

    def _local_with_gradient(self) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            values, total = self._local()
            total = self.scale_loss(total)
        return values, tf.convert_to_tensor(tape.gradient(total, self.image))

    @property
    def average(self) -> tf.Variable:
        """The moving average of the iterates so far (``config.ema``)."""
        return self.ema.average

    def advance_average(self) -> None:
        """Take the current images into the moving average of the iterates."""
        self.ema.update(self.image)

    def _remember(self, values: tf.Tensor) -> tf.Tensor:
        """All replicas' terms, (terms, batch); remembers the best images
        (with ``config.ema``, the average is the best: the output)."""
        context = tf.distribute.get_replica_context()
        if context.num_replicas_in_sync > 1:
            values = context.all_gather(values, axis=1)
        self.evaluated.assign(self.image)
        if self.config.ema:
            self.best.assign(self.average)
            self.best_loss.assign(values[0])
            return values
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
