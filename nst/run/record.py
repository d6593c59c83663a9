"""The record of a run: what a callback sees (`Progress`), what a run
returns (`Result`, and what of it goes into the PNG, Adam's state packed
small among it by `nst.core.moments`) and the bookkeeping that makes them as the
steps go (`Recorder`). Nothing here imports
TensorFlow: the recorder reads the engine's variables through ``.numpy()``.
"""

from __future__ import annotations

import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nst.base.config import Config
from nst.base.schedule import Schedule
from nst.io.images import save_image, to_pil


@dataclass(frozen=True)
class Progress:
    """What a callback receives: where the run is and how it is doing."""

    step: int
    """Steps done so far, over all scales (0 before the first)."""
    steps: int
    """Steps the run will do in all."""
    losses: dict[str, float]
    """The objective's terms at the current image (see `nst.core.losses.objective`)."""
    elapsed: float
    """Seconds since the first step started."""
    scale: int
    """Which scale is running (0, 1, ...; always 0 unless coarse to fine)."""
    job: int
    """Which job of `stylize_many` this is about (always 0 for `stylize`)."""
    _read_image: Callable[[], np.ndarray] = field(repr=False)

    def image(self) -> np.ndarray:
        """The current image (with ``ema``, the average of the iterates so
        far), (height, width, 3) floats in [0, 1]. Copies it
        from the device, so the loop pays only when a callback asks; call it
        during the callback (later it returns a later image)."""
        return self._read_image()

    def pil(self) -> Image.Image:
        """The current image as a PIL image."""
        return to_pil(self.image())

    def fields(self) -> tuple:
        """What it says but the image: (step, steps, losses, elapsed, scale, job), to send elsewhere."""
        return self.step, self.steps, self.losses, self.elapsed, self.scale, self.job

    @classmethod
    def reported(cls, fields: tuple, where: str) -> Progress:
        """A progress sent from ``where`` (`fields`), whose image stays there: `image` raises."""

        def unavailable() -> np.ndarray:
            raise RuntimeError(f"the image of a run on {where} comes back only when its run ends")

        return cls(*fields, _read_image=unavailable)


@dataclass
class Result:
    """The outcome of `stylize`."""

    image: np.ndarray
    """The image after the last step (with ``ema``, the average), (height,
    width, 3) floats in [0, 1]."""
    best_image: np.ndarray
    """The lowest-loss image seen (the one to keep); with ``ema``, the
    average of the iterates (evaluated last: its loss is ``best_loss``
    unless the run was stopped early)."""
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
    """Why the run ended early ('interrupted', 'time limit: ...', or a NaN message), else None."""
    device: str = ""
    """Where it ran (see `nst.core.device`)."""
    path: str = ""
    """How its steps ran: precision, XLA or not, pooling op (`nst.core.execution.Path`)."""
    settled: str = ""
    """How that path was settled, with what was measured (`nst.core.execution.Choice`;
    not written into the PNG, so a seed still gives the same file)."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """Settings changed during the run (`nst.run.live`), each with the step it took effect."""
    adam: dict[str, Any] | None = field(default=None, repr=False)
    """Adam's state at the end, compressed (see `nst.core.optimizers.adam_record`): saved in the
    PNG, so that ``nst --resume`` goes on with it rather than a fresh Adam."""
    normalization: dict[str, Any] | None = None
    """The images the network was normalised over (`nst.core.normalize`), if it was."""

    @property
    def complete(self) -> bool:
        """Whether the run ended as asked: after every step, or at its ``time_limit``."""
        return self.stopped is None or self.stopped.startswith(TIME_LIMIT)

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
            "path": self.path,
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
        return (
            f"Result({w}x{h}, {steps} steps, best_loss={self.best_loss:.4g} at step {self.best_step}, "
            f"stopped={self.stopped!r}, device={self.device!r})"
        )


#: How `Result.stopped` starts when ``time_limit`` ended a run: an end asked for, not a failure.
TIME_LIMIT = "time limit"


class EarlyEnd(Exception):
    """The run ends before its last step, for the reason its message gives,
    with the best image so far: the loss became NaN or infinite, or
    ``config.time_limit`` ran out."""


class Recorder:
    """Bookkeeping for a batch of jobs (`nst.core.scene.Prepared`) across
    scales: per job, its history and callbacks; timings; the best images."""

    def __init__(
        self,
        jobs: list[Any],
        schedule: Schedule,
        callback: Callable | None,
        every: int,
        t0: float,
        where: str,
        path: Any = None,
    ) -> None:
        self.jobs, self.callback, self.every, self.t0, self.where = jobs, callback, every, t0, where
        self.path = path
        """The `nst.core.execution.Choice` the run took."""
        self.schedule = schedule
        """The run's scales (the driver's: `nst.run.driver.Run.extend` lengthens it)."""
        self.histories: list[dict[str, list[float]]] = [{} for _ in jobs]
        self.timings: dict[str, float] = {}
        self.step_times: list[float] = []
        self.scale_starts: list[int] = []
        self.stopped: str | None = None
        self.problem: Any = None
        """The `nst.core.problem.Problem` of the scale running (its variables hold the images)."""
        self.adam: list[dict[str, Any]] | None = None
        """Adam's state per image when it stopped (`nst.core.optimizers.adam_record`)."""
        self.start = self.last = self.clock = 0.0

    def begin_scale(self, index: int, problem: Any, present: list[Callable]) -> None:
        """A scale starts: ``problem`` holds its images, ``present`` makes each job's output of them."""
        if self.problem is None:
            self.start = self.clock = time.perf_counter()
        self.index, self.size, self.problem, self.present = index, self.schedule[index].size, problem, present
        self.scale_starts.append(len(self.step_times))
        self.last = time.perf_counter()

    def report(self, k: int, values: np.ndarray) -> None:
        """Record evaluation ``k`` of this scale (``values``: terms x batch);
        call back; end the run on NaN, or when ``time_limit`` has run out."""
        now = time.perf_counter()
        self.step_times.append(now - self.last)
        step = self.schedule.before(self.index) + k
        for j, (job, history) in enumerate(zip(self.jobs, self.histories)):
            losses = {name: float(v) for name, v in zip(self.problem.names, values[:, j])}
            for name, v in {"step": float(step), "size": float(self.size), "time": now - self.start, **losses}.items():
                history.setdefault(name, []).append(v)
            if not math.isfinite(losses["total"]):
                which = f" in job {job.index}" if len(self.jobs) > 1 else ""
                raise EarlyEnd(
                    f"the loss became {losses['total']} at step {step}{which}; kept the best image before it"
                )
            if self.callback is not None and (k % self.every == 0 or k == self.schedule[self.index].steps):
                read = functools.partial(self._read, j)
                self.callback(
                    Progress(step, self.schedule.total, losses, now - self.start, self.index, job.index, read)
                )
        limit = self.jobs[0].config.time_limit
        if limit is not None and now - self.clock >= limit and not self.schedule.is_end(self.index, k):
            raise EarlyEnd(f"{TIME_LIMIT}: {limit:g} s of steps at step {step}")
        self.last = time.perf_counter()

    def reopen(self, step: int) -> None:
        """Go on after the run ended at ``step`` (`nst.run.driver.Run.extend`):
        ``time_limit`` counts from now."""
        steps = self.histories[0].get("step")
        if steps and steps[-1] == step:
            # The run ended with an evaluation of the image it reached, which
            # the next step makes again (a stopped run had not evaluated it).
            for history in self.histories:
                for values in history.values():
                    values.pop()
            self.step_times.pop()
        self.stopped = None
        self.clock = time.perf_counter()

    def _read(self, j: int) -> np.ndarray:
        """The image a callback shows: the current one, or with ``ema`` the average so far."""
        shown = self.problem.average if self.jobs[j].config.ema else self.problem.evaluated
        return self.present[j](shown[j].numpy())

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
        if self.jobs[j].config.ema and best is not None:  # the average is the output: the last evaluated
            best = len(totals) - 1
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
            path=str(self.path.path) if self.path else "",
            settled=str(self.path) if self.path else "",
            adam=self.adam[j] if self.adam else None,
            normalization=self.problem.extractor.normalization,
        )
