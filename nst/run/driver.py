"""The one run driver: a batch of jobs through its schedule, scale by scale,
into its record. Every run goes through it: `stylize_many` drives one to its
end, a live run (`nst.run.live`) drives one in a thread and steers it
between two steps, and the path measurement steps one per candidate path.

Before the first step the path (precision, XLA, pooling op) is settled
where the settings leave it open (`nst.core.execution`: where that is
measured, it steps this run's own first steps at its largest scale on each
path, `Run.advance`). Then, at each scale of its `nst.base.schedule.Schedule`:

1. the images at that size (`nst.core.scene`): each job's start, the previous
   scale's result upsampled after the first;
2. the targets (`nst.core.targets`);
3. an engine of compiled programs for that shape (`nst.core.engine`: kept from
   an earlier run of the same key, so a loop of calls compiles once), reset
   to this run's start, targets and weights, with the previous scale's Adam
   moments where ``scale_warm_start`` asks for them;
4. Adam or L-BFGS over it (`nst.core.optimizers`), each evaluation reported
   to the run's record (`nst.run.record.Recorder`).

The lowest-loss image seen is kept on the device as the run goes, so a run
that stops early (Ctrl-C, a NaN, its time limit) loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nst.base.backend import tf
from nst.base.schedule import Schedule
from nst.core import engine as engines
from nst.core import execution
from nst.core.features import extractor_for
from nst.core.losses import Targets, Weights
from nst.core.optimizers import LBFGS, adam, adam_moments, adam_record, carry_adam, lbfgs, restore_adam
from nst.core.scene import Prepared, resize_to
from nst.core.targets import for_job
from nst.run.record import EarlyEnd, Recorder, Result
from nst.run.resources import check_memory, estimate_bytes


class Run:
    """A batch of jobs (`nst.core.scene.Prepared`, one batch key) on its way
    through its schedule: the scale it is at, the steps done there, the
    engine it holds and its record.

    ``measure``: settle an open path by measuring it now where that pays
    (a still run); else take a remembered path or the unmeasured one (a
    live run, which must start at once). ``on_report`` is called after each
    evaluation is recorded; ``t0``: when the run was asked for (default: now);
    ``start``: the scale it starts at (the measurement's runs: the largest)."""

    def __init__(
        self,
        batch: list[Prepared],
        callback: Callable | None = None,
        every: int = 1,
        *,
        measure: bool = True,
        on_report: Callable[[], None] | None = None,
        t0: float | None = None,
        start: int = 0,
    ) -> None:
        t0 = time.perf_counter() if t0 is None else t0
        config, self.device = batch[0].config, batch[0].device
        self.strategy = self.device.strategy if len(batch) == 1 and not config.tile else self.device.spread
        # Each replica takes an equal share of the images (the batch padded
        # with copies of the last job, whose results are dropped), or, tiled, of the tiles.
        replicas = self.strategy.num_replicas_in_sync
        members = batch if config.tile else batch + [batch[-1]] * (-len(batch) % replicas)
        self.where = f"{self.device}" + (f", {replicas} replicas" if replicas > 1 else "")
        self.batch, self.members, self.scale = batch, members, len(config.schedule) - 1
        self._check_memory()  # at the largest scale, before a measurement uses the memory
        try:
            choice = execution.choose(
                config,
                self.device,
                (len(members), *self._shape()),
                config.schedule[-1].steps,
                self._probe if measure else None,
            )
        except tf.errors.ResourceExhaustedError:
            raise self._out_of_memory() from None
        self.batch, self.members = ([m.on(choice.path.fields()) for m in jobs] for jobs in (batch, members))
        self.config = self.batch[0].config
        self.record = Recorder(self.batch, self.config.schedule, callback, every, t0, self.where, choice)
        """The run's history, timings and best images, per job."""
        self.engine: engines.Engine | None = None
        """The compiled programs of the scale running (`nst.core.engine`)."""
        self.k = 0
        """Steps (Adam updates, L-BFGS evaluations) done at this scale."""
        self._on_report, self._holding, self._runs = on_report, False, -1
        try:
            self.enter(start, None)
        except BaseException as e:
            self.release()
            if isinstance(e, tf.errors.ResourceExhaustedError):
                raise self._out_of_memory() from None
            raise
        self.record.timings["setup"] = time.perf_counter() - t0

    @property
    def schedule(self) -> Schedule:
        """The scales the run climbs (`nst.base.schedule`)."""
        return self.record.schedule

    @property
    def step(self) -> int:
        """Steps done so far, over all scales."""
        return self.schedule.before(self.scale) + self.k

    def enter(self, index: int, starts: np.ndarray | None) -> None:
        """Go to scale ``index`` from ``starts`` (None: each job's own start):
        the previous scale's engine given back (its Adam moments carried where
        asked), this scale's acquired with its targets and weights."""
        self.scale = index
        self._check_memory()
        moments = adam_moments(self.engine) if self.engine is not None and self.config.scale_warm_start else None
        self.release()
        self.engine = self._engine(index, starts)
        self._holding, self._runs = True, self.engine.runs
        carry_adam(self.engine, moments)
        if self.config.adam_warm_start:  # the start's Adam state, from the init PNG's record, where it fits
            restore_adam(self.engine, self.config.init)
        self.lbfgs = (
            LBFGS(self.engine.problem.image.numpy(), self.config.lbfgs_memory)
            if self.config.optimizer == "lbfgs"
            else None
        )
        """L-BFGS's state at this scale (its curvature carries over a pause)."""
        self.k = 0
        scenes = [m.scenes[index] for m in self.members]
        self.record.begin_scale(index, self.engine.problem, [scene.present for scene in scenes])

    def change(self, changes: dict[str, Any]) -> None:
        """Go on with ``changes`` to settings the compiled programs do not
        depend on (the `nst.base.config.Role.STEERABLE` ones, step counts),
        from the next step, at this scale and the ones to come."""
        self.batch, self.members = ([m.on(changes) for m in jobs] for jobs in (self.batch, self.members))
        self.config = self.batch[0].config
        self.engine.assign_weights(self.config)

    def extend(self, steps: int) -> None:
        """After the run ended (or was stopped), ``steps`` more at the scale
        it was at, from where it was (the engine taken back: `hold`); a
        ``time_limit`` counts anew."""
        self.hold()
        self.record.schedule = self.schedule.with_steps(self.scale, self.k + steps)
        per_scale = tuple(scale.steps for scale in self.schedule)
        self.change({"scale_steps": per_scale} if self.config.scales else {"steps": per_scale[0]})
        self.record.reopen(self.step)

    def advance(self) -> float:
        """One step more, then stop (how the path measurement steps a run:
        `nst.core.execution.Probe`); the objective it reported, summed over the batch."""
        k = self.k
        self.drive(lambda j: j <= k)
        return sum(history["total"][-1] for history in self.record.histories)

    def drive(self, between: Callable[[int], bool] | None = None) -> None:
        """Every step left, scale after scale. ``between(k)``, before each
        step, may stop the run by returning False. How the run ended is in
        ``record.stopped`` (None: all its steps); Ctrl-C before anything was
        made, and any error other than an early end, are raised."""
        try:
            while self._steps(between):
                if self.scale + 1 == len(self.schedule):
                    return
                # The next scale starts from this one's result, upsampled.
                shape = self.members[0].scenes[self.scale + 1].content.shape[:2]
                images = self.engine.problem.image.numpy()
                self.enter(self.scale + 1, np.stack([resize_to(image, shape) for image in images]))
            self.record.stopped = "interrupted"
        except KeyboardInterrupt:
            if self.record.problem is None:  # nothing made yet: there is nothing to return
                raise
            self.record.stopped = "interrupted"
        except EarlyEnd as e:
            self.record.stopped = str(e)
        except tf.errors.ResourceExhaustedError:
            raise self._out_of_memory() from None

    def results(self) -> list[Result]:
        """A `Result` per job of the batch (the padding's are dropped), while
        the run holds its engine: stopped or not, the PNG records the Adam
        state a resumed run needs."""
        self.record.adam = adam_record(self.engine) if self._holding else None
        return [self.record.result(j) for j in range(len(self.batch))]

    def release(self) -> None:
        """Let other runs of this shape have the engine (once)."""
        if self._holding:
            self._holding = False
            self.engine.release()

    def hold(self) -> None:
        """Take the engine back to go on after the run ended, if no other run
        has used it since (RuntimeError, saying which, if one has)."""
        if not self.engine.lock.acquire(blocking=False):
            raise RuntimeError("another run of this shape is going: stop it first")
        if self.engine.runs != self._runs:  # its variables hold another run's state now
            self.engine.release()
            raise RuntimeError("another run of this shape has run since: start a new run (its settings are kept)")
        self._holding = True

    def _steps(self, between: Callable[[int], bool] | None) -> bool:
        """The steps left at this scale; False if ``between`` stopped the run."""
        steps = self.schedule[self.scale].steps
        if self.config.optimizer == "adam":
            done = adam(self.engine, steps, self._report, first=self.k, between=between, average=bool(self.config.ema))
        else:
            done = lbfgs(self.engine, self.lbfgs, steps, self._report, first=self.k, between=between)
        self.k = min(self.k, steps)
        return done

    def _report(self, k: int, values: np.ndarray) -> None:
        self.record.report(k, values)
        if self._on_report is not None:
            self._on_report()
        self.k = k + 1

    def _probe(self, path: execution.Path) -> Run:
        """The batch's run on ``path`` from its start at the largest scale, for the measurement to step."""
        return Run([m.on(path.fields()) for m in self.batch], measure=False, start=self.scale)

    def _engine(self, index: int, starts: np.ndarray | None) -> engines.Engine:
        """The engine for the batch at scale ``index``, reset to ``starts``
        (None: each job's own start) and held."""
        members = self.members
        config, scenes = members[0].config, [m.scenes[index] for m in members]
        if starts is None:
            starts = np.stack([scene.start(m.config) for scene, m in zip(scenes, members)])
        with self.strategy.scope():
            extractor = extractor_for(config, str(id(self.strategy)))
        targets = Targets.concat([for_job(m, index, extractor) for m in members])
        weights = Weights.of([m.config for m in members])
        return engines.acquire(config, self.strategy, starts, targets, weights, scenes[0].shapes())

    def _shape(self) -> tuple[int, ...]:
        return self.members[0].scenes[self.scale].content.shape

    def _check_memory(self) -> None:
        """Host memory for this scale (a GPU's out-of-memory error is caught as it comes)."""
        if self.device.kind == "CPU":
            check_memory(self.batch[0].config, *self._shape()[:2], batch=len(self.members))

    def _out_of_memory(self) -> MemoryError:
        shape, images = self._shape(), len(self.members)
        return MemoryError(
            f"out of memory on {self.where} for {images} x a {shape[1]} x {shape[0]} output (about "
            f"{estimate_bytes(self.batch[0].config, *shape[:2], images) / 2**30:.1f} GiB needed): use tile=512 "
            f"(the same result, in tiles), a smaller size=, fewer runs at once, or coarse to fine (scales=) on "
            f"a machine with more memory."
        )
