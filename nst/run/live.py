"""Live runs: steer a running optimisation, pause it, continue it, and start
the next one at once.

    run = nst.run.live.start("photo.jpg", "painting.jpg", size=256, steps=300)
    run.set(style_weight=1e4)      # from the next step on: no restart, no recompiling
    run.pause(); run.resume()
    result = run.result()          # waits for the end (a `nst.Result`)
    run.proceed(100)               # 100 more steps, with the same Adam state
    result = run.result()

What makes this possible is that a run's whole state lives in variables that
one compiled Adam step reads (`nst.core.engine`): the image, the targets, the
weights alpha, beta, gamma and w_l, and Adam's moments and learning rate.
`set` assigns some of them between two steps. A second run with the same
key (image size, layers, weights, precision, Adam betas, ...) reuses the
compiled step of any earlier run, live or not: it assigns its own start,
targets and weights and zeroes Adam's state, so its first step costs one
step, not a compilation. Targets are computed
once for the same inputs and settings (`nst.core.targets.for_job`).

A live run takes every setting `nst.stylize` does: Adam or L-BFGS, coarse
to fine, tiles, any precision. L-BFGS's line searches and curvature pairs
assume a fixed objective, so when a weight changes it starts afresh from
the last accepted image (its evaluations go on counting); coarse to fine,
the run moves to the next scale when a scale's steps are done. Every step's
values in force are in the result's history
(``content_weight``, ``style_weight``, ``tv_weight``, ``learning_rate``,
``style_layer_weights/<layer>``), and the changes, with the step each took
effect, are in ``Result.changes`` and the saved PNG.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nst.base.backend import tf
from nst.base.config import Config, ConfigError, Role, named
from nst.core import engine as engines
from nst.core.scene import Prepared
from nst.io.images import ImageSource
from nst.io.jobs import Job, Previous, config_for
from nst.run.driver import Run
from nst.run.record import Progress, Result

#: The settings a running run takes from `LiveRun.set`.
STEERABLE = named(Role.STEERABLE)


def start(
    content: ImageSource,
    style: ImageSource | list[ImageSource],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    masks: list[ImageSource] | ImageSource | None = None,
    style_masks: list[ImageSource] | None = None,
    previous: Previous | None = None,
    **overrides: Any,
) -> LiveRun:
    """Start a run in a background thread and return its handle at once.

    Arguments as for `nst.stylize` (regions too; ``previous``: a video
    frame's, see `nst.io.jobs.Job`). The callback runs in that thread.
    """
    t0 = time.perf_counter()
    config = config_for(config, overrides)
    job = Prepared.of(0, Job(content, style, masks=masks, style_masks=style_masks, previous=previous), config)
    return LiveRun(job, callback, callback_every, t0)


class LiveRun:
    """A run going on in a background thread (see `start`)."""

    def __init__(self, job: Prepared, callback: Callable | None, every: int, t0: float) -> None:
        self.changes: list[dict[str, Any]] = []
        """Each `set` that took effect: {'step': ..., setting: value, ...}."""
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop, self._running, self._held = threading.Event(), threading.Event(), threading.Event()
        self._running.set()
        self._result: Result | None = None
        self._error: BaseException | None = None
        # A live run starts at once: it takes a path measured earlier (by a
        # still run: `nst.core.execution`), or the unmeasured one; it measures none itself.
        self._run = Run([job], callback, every, measure=False, on_report=self._record, t0=t0)
        self._thread = self._launch()

    @property
    def config(self) -> Config:
        """The settings in force (the run's, with the changes that took effect)."""
        return self._run.config

    @property
    def engine(self) -> engines.Engine:
        """The compiled programs of the scale running (`nst.core.engine`), held while it runs."""
        return self._run.engine

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
        where it was: the same image (with ``ema``, the average it ended
        with), targets, weights and Adam state; a ``time_limit`` counts anew."""
        if self.running:
            raise RuntimeError("the run is still going: stop it or wait for its end first")
        self._run.extend(steps)
        self._stop.clear()
        self._running.set()
        self._result = None
        self._thread = self._launch()

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
        """Steps done so far, over all scales (Adam updates, or L-BFGS evaluations)."""
        return self._run.step

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

    def _launch(self) -> threading.Thread:
        thread = threading.Thread(target=self._work, daemon=True, name="nst-live-run")
        thread.start()
        return thread

    def _work(self) -> None:
        run = self._run
        try:
            try:
                run.drive(self._between)
            except BaseException as e:  # raised by `result`, in the caller's thread
                self._error = e
                return
            result = run.results()[0]
            result.config, result.changes = self.config, list(self.changes)
            if self.changes and not self.config.ema:  # the best step under the weights in force at the end
                steps, totals = np.array(result.history["step"]), np.array(result.history["total"])
                since = steps >= self.changes[-1]["step"]
                result.best_step = int(steps[since][np.argmin(totals[since])]) if since.any() else result.best_step
            self._result = result
        finally:
            run.release()

    def _between(self, k: int) -> bool:
        """Before step ``k``: hold while paused; False to stop; the changes asked for take effect."""
        if not self._running.is_set():
            self._held.set()
            self._running.wait()
            self._held.clear()
        if self._stop.is_set():
            return False
        self._apply()
        return True

    def _apply(self) -> None:
        """Assign the changes asked for since the last step, and note them."""
        with self._lock:
            values, self._pending = self._pending, {}
        if not values:
            return
        self._run.change(values)
        # Losses under other weights do not compare: the best image is the
        # best under the objective in force, from this step on.
        self.engine.problem.best_loss.assign(tf.fill([1], math.inf))
        self.changes.append({"step": self.step, **values})

    def _record(self) -> None:
        """The values in force at this step, beside its losses in the history."""
        history, c = self._run.record.histories[0], self.config
        # Each steerable setting; the style layers' weights one per layer (1/L each where not given).
        in_force = {name: getattr(c, name) for name in STEERABLE if name != "style_layer_weights"}
        in_force.update({f"style_layer_weights/{layer}": w for layer, w in zip(c.style_layers, c.layer_weights)})
        for name, value in in_force.items():
            history.setdefault(name, []).append(float(value))
