"""Live runs: steer a running optimisation, pause it, continue it, and start
the next one at once.

    run = nst.live.start("photo.jpg", "painting.jpg", size=256, steps=300)
    run.set(style_weight=1e4)      # from the next step on: no restart, no recompiling
    run.pause(); run.resume()
    result = run.result()          # waits for the end (a `nst.Result`)
    run.proceed(100)               # 100 more steps, with the same Adam state
    result = run.result()

What makes this possible is that a run's whole state lives in variables that
one compiled Adam step reads (`nst.optimize.adam_steps`): the image, the
targets, the weights alpha, beta, gamma and w_l, and Adam's moments and
learning rate. `set` assigns some of them between two steps. A second run
with the same image size, layers, weights, precision and Adam betas reuses
the compiled step (an `_Engine`): it assigns its own start, targets and
weights and zeroes Adam's state, so its first step costs one step, not a
compilation (3-6 s at 512 px on a CPU). Targets are computed once for the
same inputs and settings.

A live run is one Adam run at one size (no coarse to fine, no L-BFGS, whose
line search assumes a fixed objective; no float16 loss scaling): for those,
`nst.stylize`. Every step's values in force are in the result's history
(``content_weight``, ``style_weight``, ``tv_weight``, ``learning_rate``,
``style_layer_weights/<layer>``), and the changes, with the step each took
effect, are in ``Result.changes`` and the saved PNG.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from nst.backend import tf
from nst.config import Config, ConfigError
from nst.features import extractor_for
from nst.images import ImageSource
from nst.losses import Targets, Weights
from nst.optimize import (
    Job,
    Progress,
    Result,
    _adam_record,
    _NonFinite,
    _Prepared,
    _Problem,
    _Run,
    _settings,
    _targets_for,
)
from nst.optimize import adam_steps as _adam_steps

#: The settings a running run takes from `LiveRun.set`.
STEERABLE = ("content_weight", "style_weight", "tv_weight", "learning_rate", "style_layer_weights")
#: Compiled engines kept for warm starts (each holds VGG19's activations' worth of buffers).
ENGINES = 3


def start(
    content: ImageSource,
    style: ImageSource | list[ImageSource],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    masks: list[ImageSource] | ImageSource | None = None,
    style_masks: list[ImageSource] | None = None,
    previous: Any = None,
    **overrides: Any,
) -> LiveRun:
    """Start a run in a background thread and return its handle at once.

    Arguments as for `nst.stylize` (regions too; ``previous``: a video
    frame's, see `nst.optimize.Job`). The callback runs in that thread.
    Raises ConfigError for settings a live run cannot take (see `takes`).
    """
    t0 = time.perf_counter()
    config = _settings(config, overrides)
    if not takes(config):
        raise ConfigError("a live run is one untiled Adam run at one size in float32 or bfloat16: use nst.stylize "
                          "for coarse to fine, L-BFGS, float16 or tiles")  # fmt: skip
    job = _Prepared.of(0, Job(content, style, masks=masks, style_masks=style_masks, previous=previous), config)
    return LiveRun(job, callback, callback_every, t0)


def takes(config: Config) -> bool:
    """Whether a live run can take ``config``: one untiled Adam run at one
    size, in float32 or bfloat16."""
    return (
        config.scales is None and config.optimizer == "adam" and config.precision != "mixed_float16" and not config.tile
    )


class LiveRun:
    """A run going on in a background thread (see `start`)."""

    def __init__(self, job: _Prepared, callback: Callable | None, every: int, t0: float) -> None:
        self.job, self.config = job, job.config
        self.changes: list[dict[str, Any]] = []
        """Each `set` that took effect: {'step': ..., setting: value, ...}."""
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop, self._running, self._held = threading.Event(), threading.Event(), threading.Event()
        self._running.set()
        self._result: Result | None = None
        self._error: BaseException | None = None
        targets = _targets(job)
        self._engine = _engine(job, targets)
        scene = job.scenes[0]
        self._engine.reset(scene.start(job.config), targets, job.config)
        self._book = _Run([job], callback, every, t0, self._engine.where)
        self._book.timings["setup"] = time.perf_counter() - t0
        self._book.begin_scale(0, job.config.size, self._engine.problem, [scene.present])
        self._k = 0  # updates done
        self._thread = self._launch(job.config.steps)

    # -- steering ---------------------------------------------------------------

    def set(self, **values: Any) -> None:
        """Change weights or the learning rate from the next step on (any of
        `STEERABLE`); checked now, like any setting."""
        unknown = set(values) - set(STEERABLE)
        if unknown:
            raise ConfigError(f"a running run takes only {', '.join(STEERABLE)}; not {', '.join(sorted(unknown))}")
        with self._lock:
            self.config.replace(**{**self._pending, **values})  # a ConfigError now, not in the thread
            self._pending.update(values)

    def pause(self) -> None:
        """Hold the run before its next step (the thread waits)."""
        self._running.clear()

    def resume(self) -> None:
        """Go on after `pause`."""
        self._running.set()

    def stop(self) -> None:
        """End the run before its next step; the best image so far is kept."""
        self._stop.set()
        self._running.set()

    def proceed(self, steps: int) -> None:
        """After the run has ended (or was stopped), do ``steps`` more from
        where it was: the same image, targets, weights and Adam state."""
        if self.running:
            raise RuntimeError("the run is still going: stop it or wait for its end first")
        total = self._k + steps
        self.config = self.config.replace(steps=total)
        self._book.schedule = [(self.config.size, total)]
        self._book.total_steps = total
        history = self._book.histories[0]
        if history.get("step") and history["step"][-1] == self._k:
            # The run ended with an evaluation of the image it reached, which
            # the next step makes again (a stopped run had not evaluated it).
            for values in history.values():
                values.pop()
            self._book.step_times.pop()
        self._book.stopped = None
        self._stop.clear()
        self._running.set()
        self._result = None
        self._thread = self._launch(total)

    # -- state ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def paused(self) -> bool:
        """True once the run is holding (after `pause`, when its step in flight is done)."""
        return self._held.is_set()

    @property
    def step(self) -> int:
        """Updates done so far."""
        return self._k

    def result(self, timeout: float | None = None) -> Result:
        """Wait for the run to end (or ``timeout`` seconds: TimeoutError) and
        return its `Result`; an error in the run is raised here."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the run is still going after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    # -- the loop -----------------------------------------------------------------

    def _launch(self, total: int) -> threading.Thread:
        thread = threading.Thread(target=self._work, args=(total,), daemon=True, name="nst-live-run")
        thread.start()
        return thread

    def _work(self, total: int) -> None:
        engine, book = self._engine, self._book
        try:
            with engine.lock:
                while self._k <= total:
                    if not self._running.is_set():
                        self._held.set()
                        self._running.wait()
                        self._held.clear()
                    if self._stop.is_set():
                        book.stopped = "interrupted"
                        break
                    self._apply()
                    values = (engine.step() if self._k < total else engine.evaluate()).numpy()
                    book.report(self._k, values)
                    self._record()
                    self._k += 1
                self._k = min(self._k, total)
        except KeyboardInterrupt:
            book.stopped = "interrupted"
        except _NonFinite as e:
            book.stopped = str(e)
        except BaseException as e:  # raised by `result`, in the caller's thread
            self._error = e
            return
        engine.problem.adam = _adam_record(engine.optimizer)
        result = book.result(0)
        result.config, result.changes = self.config, list(self.changes)
        if self.changes:  # the best step under the weights in force at the end
            steps, totals = np.array(result.history["step"]), np.array(result.history["total"])
            since = steps >= self.changes[-1]["step"]
            result.best_step = int(steps[since][np.argmin(totals[since])]) if since.any() else result.best_step
        self._result = result

    def _apply(self) -> None:
        """Assign the changes asked for since the last step, and note them."""
        with self._lock:
            values, self._pending = self._pending, {}
        if not values:
            return
        self.config = self.config.replace(**values)
        self._engine.assign_weights(self.config)
        # Losses under other weights do not compare: the best image is the
        # best under the objective in force, from this step on.
        self._engine.problem.best_loss.assign(tf.fill([1], math.inf))
        self.changes.append({"step": self._k, **values})

    def _record(self) -> None:
        """The values in force at this step, beside its losses in the history."""
        history, c = self._book.histories[0], self.config
        in_force = {"content_weight": c.content_weight, "style_weight": c.style_weight, "tv_weight": c.tv_weight,
                    "learning_rate": c.learning_rate}  # fmt: skip
        in_force.update({f"style_layer_weights/{layer}": w for layer, w in zip(c.style_layers, c.layer_weights)})
        for name, value in in_force.items():
            history.setdefault(name, []).append(float(value))


class _Engine:
    """One compiled Adam step for one graph (image shape, layers, weights,
    precision, betas), with everything a run owns in variables."""

    def __init__(self, job: _Prepared, targets: Targets) -> None:
        config, device = job.config, job.device
        start = job.scenes[0].content[None]
        self.problem = _Problem(start, _extractor(job), targets, Weights.of([config]), config, device.strategy)
        self.optimizer, self.step, self.evaluate = _adam_steps(self.problem, config)
        self.where = f"{device}"
        self.lock = threading.Lock()

    def reset(self, start: np.ndarray, targets: Targets, config: Config) -> None:
        """A new run: its start, targets and weights; Adam's state zeroed."""
        problem = self.problem
        for variable in (problem.image, problem.best, problem.evaluated):
            variable.assign(start[None])
        problem.best_loss.assign(tf.fill([1], math.inf))
        for variable, value in zip(tf.nest.flatten(problem.targets), tf.nest.flatten(targets)):
            variable.assign(value)
        for variable in self.optimizer.variables:
            if variable.name.endswith(("_momentum", "_velocity")):
                variable.assign(tf.zeros_like(variable))
        self.optimizer.iterations.assign(0)
        self.assign_weights(config)

    def assign_weights(self, config: Config) -> None:
        """alpha, beta, gamma, w_l and the learning rate of ``config``, read by the next step."""
        for variable, value in zip(self.problem.weights, Weights.of([config])):
            variable.assign(value)
        self.optimizer.learning_rate = config.learning_rate


_ENGINES: OrderedDict[tuple, _Engine] = OrderedDict()
_TARGETS: dict[tuple, Targets] = {}


def _key(job: _Prepared) -> tuple:
    """What a compiled step depends on; runs that agree on it share one."""
    c = job.config
    regions = job.scenes[0].regions
    return (job.scenes[0].content.shape, None if regions is None else len(regions), job.scenes[0].previous is None,
            c.style_layers, c.content_layers, c.weights, c.seed if c.weights == "random" else None, c.pooling,
            c.normalize, c.precision, c.loss_form, c.jit_compile, c.beta_1, c.beta_2, c.epsilon, str(job.device))  # fmt: skip


def _engine(job: _Prepared, targets: Targets) -> _Engine:
    """The engine for ``job``'s graph: kept from an earlier run, or built now."""
    key = _key(job)
    if key in _ENGINES:
        _ENGINES.move_to_end(key)
        engine = _ENGINES[key]
        if engine.lock.locked():
            raise RuntimeError("a live run with these settings is still going: stop it first")
        return engine
    engine = _ENGINES[key] = _Engine(job, targets)
    while len(_ENGINES) > ENGINES:
        _ENGINES.popitem(last=False)
    return engine


def _extractor(job: _Prepared) -> Any:
    """VGG19 for the job (built once per process: `get_extractor`)."""
    strategy = job.device.strategy
    with strategy.scope():
        return extractor_for(job.config, str(id(strategy)))


def _targets(job: _Prepared) -> Targets:
    """The job's targets, computed once for the same inputs and settings
    (only inputs named by a path, URL or sample are remembered)."""
    c = job.config
    masks = (*job.sources.get("masks", ()), job.sources.get("mask_map"), *job.sources.get("style_masks", ()))
    key = (tuple(job.sources["styles"]), job.sources["content"], c.size, c.style_scale, job.blend, c.preserve_color,
           c.max_pixels, masks, c.mask_mode, _key(job))  # fmt: skip
    named = not any(s.startswith("<") for s in (job.sources["content"], *job.sources["styles"], *masks) if s)
    if named and key in _TARGETS:
        return _TARGETS[key]
    targets = _targets_for(c, job.scenes[0])(_extractor(job), job.scenes[0], job.blend, c)
    if named:
        _TARGETS.clear()  # the last inputs only: a studio's Run again
        _TARGETS[key] = targets
    return targets
