"""The run: `stylize` and `stylize_many`, through the one core.

`stylize` runs one image; `stylize_many` runs several independent ones (a
sweep, see `grid`) as batches, spread over the device's replicas. For each
scale of a run (one, or coarse to fine, ``config.scales``):

1. the images at that size (`nst.core.scene`): each job's start, the previous
   scale's result upsampled after the first;
2. the targets, once per scale (`nst.core.targets`);
3. an engine of compiled programs for that shape (`nst.core.engine`: kept from
   an earlier run of the same key, so a loop of calls compiles once), reset
   to this run's start, targets and weights;
4. Adam or L-BFGS over it (`nst.core.optimizers`), reporting each evaluation to
   the run's record (`nst.run.record.Recorder`).

The images are a `tf.Variable` of pixels in [0, 1], (batch, height, width,
channels); `stylize` is a batch of one. The lowest-loss image seen is kept
on the device as the run goes, so stopping early (Ctrl-C, a NaN) loses
nothing.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nst.base.backend import tf
from nst.base.config import Config
from nst.core import engine as engines
from nst.core import execution
from nst.core.features import extractor_for
from nst.core.losses import Targets, Weights
from nst.core.optimizers import adam, adam_moments, adam_record, carry_adam, lbfgs
from nst.core.scene import Prepared, resize
from nst.core.targets import for_job
from nst.io.images import ImageSource
from nst.io.jobs import Job, grid, settings
from nst.run.record import EarlyEnd, Progress, Recorder, Result
from nst.run.resources import check_memory, estimate_bytes

__all__ = ["Job", "Progress", "Result", "grid", "stylize", "stylize_many"]


def stylize(
    content: ImageSource,
    style: ImageSource | Sequence[ImageSource],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    masks: Sequence[ImageSource] | ImageSource | None = None,
    style_masks: Sequence[ImageSource] | None = None,
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
        masks: regions (`nst.io.regions`): one mask per style image (white:
            that style applies; uncovered pixels keep the content only), or
            one colour-coded map, one colour per style image.
        style_masks: the part of each style image to take its style from.
        **overrides: any `Config` field, e.g. ``steps=200, style_weight=1e4``;
            ``preset="tutorial"`` starts from that preset instead of ``config``.

    Returns:
        A `Result`. Ctrl-C ends the run early and still returns one.
    """
    (result,) = stylize_many(
        [Job(content, style, masks=masks, style_masks=style_masks)],
        config=config,
        callback=callback,
        callback_every=callback_every,
        **overrides,
    )
    assert result is not None  # one job: it ran, or its interrupt was raised
    return result


def stylize_many(
    jobs: Sequence[Job],
    *,
    config: Config | None = None,
    callback: Callable[[Progress], Any] | None = None,
    callback_every: int = 1,
    **overrides: Any,
) -> list[Result | None]:
    """Several independent runs (a sweep: see `grid`), optimised as batches.

    Jobs whose outputs have the same shape at every scale and whose settings
    differ only in `PER_IMAGE` ones run together, as one batch of images,
    spread over the device's replicas (`nst.core.device`: all TPU cores, all GPUs).
    Each image's loss depends on it alone and Adam moves each pixel on its
    own, so a batch gives the images of separate runs (tested), in less time
    when the device has room. L-BFGS runs, whose line searches would couple
    the images, run one by one.

    Args:
        jobs: the runs; each job's settings override the shared ones.
        config: the shared settings, as for `stylize`.
        callback: as for `stylize`, once per job at each report;
            ``progress.job`` is the job's index in ``jobs``.
        **overrides: shared `Config` fields, as for `stylize`.

    Returns:
        A `Result` per job, in order. If the user interrupts, the batch that
        was running returns its best images so far, and the jobs of batches
        that had not started get ``None``.
    """
    base = settings(config, overrides)
    # All inputs are read and checked before anything runs.
    prepared = [Prepared.of(index, job, base) for index, job in enumerate(jobs)]
    batches: dict[tuple, list[Prepared]] = {}
    for p in prepared:
        batches.setdefault(p.batch_key(), []).append(p)
    results: list[Result | None] = [None] * len(jobs)
    for batch in batches.values():
        try:
            done = _run_batch(batch, callback, callback_every)
        except KeyboardInterrupt:
            if not any(results):  # nothing made yet: nothing to return
                raise
            break
        for p, result in zip(batch, done):
            results[p.index] = result
        if any(r.stopped == "interrupted" for r in done):
            break
    return results


def _engine(
    members: list[Prepared],
    index: int,
    strategy: tf.distribute.Strategy,
    starts: np.ndarray | None,
    path: execution.Path | None = None,
) -> engines.Engine:
    """The engine for ``members`` at scale ``index`` (on ``path``, if one is
    given), reset to ``starts`` (None: each job's own start) and held.

    2. The targets, once per scale: P at the content layers and the blend
       of the styles' Gram matrices A at the style layers (`nst.core.targets`).
    3. The compiled programs for this shape, set to this run, with a fresh
       Adam (`nst.core.engine`, `nst.core.optimizers`).
    """
    if path is not None:
        members = [m.on(path.settings()) for m in members]
    config, scenes = members[0].config, [m.scenes[index] for m in members]
    if starts is None:
        starts = np.stack([scene.start(m.config) for scene, m in zip(scenes, members)])
    with strategy.scope():
        extractor = extractor_for(config, str(id(strategy)))
    targets = Targets.concat([for_job(m, index, extractor) for m in members])
    weights = Weights.of([m.config for m in members])
    return engines.acquire(config, strategy, starts, targets, weights, scenes[0].shapes())


def _out_of_memory(where: str, images: int, shape: tuple[int, ...], config: Config) -> MemoryError:
    return MemoryError(
        f"out of memory on {where} for {images} x a {shape[1]} x {shape[0]} output (about "
        f"{estimate_bytes(config, *shape[:2], images) / 2**30:.1f} GiB needed): use --tile 512 (the "
        f"same result, in tiles), a smaller --size, fewer runs at once, or coarse to fine (--scales) on a "
        f"machine with more memory."
    )


def _run_batch(batch: list[Prepared], callback: Callable | None, every: int) -> list[Result]:
    """Run ``batch`` as one batch of images; one `Result` per job."""
    t0 = time.perf_counter()
    config, device = batch[0].config, batch[0].device
    strategy = device.strategy if len(batch) == 1 and not config.tile else device.spread
    # Each replica takes an equal share of the images (pad the batch with
    # copies of the last job; their results are dropped), or, tiled, of the tiles.
    replicas = strategy.num_replicas_in_sync
    members = batch if config.tile else batch + [batch[-1]] * (-len(batch) % replicas)
    where = f"{device}" + (f", {replicas} replicas" if replicas > 1 else "")
    # 0. The path (precision, XLA, pooling op) where the settings leave it
    #    open: remembered, or measured now at the largest scale (`nst.core.execution`).
    last, shape = len(config.schedule) - 1, members[0].scenes[-1].content.shape
    if device.kind == "CPU":  # host memory, before a measurement uses it
        check_memory(config, *shape[:2], batch=len(members))
    try:
        choice = execution.choose(
            config,
            device,
            (len(members), *shape),
            config.schedule[last][1],
            functools.partial(_engine, members, last, strategy, None),
        )
    except tf.errors.ResourceExhaustedError:
        raise _out_of_memory(where, len(members), shape, config) from None
    batch, members = ([m.on(choice.path.settings()) for m in jobs] for jobs in (batch, members))
    config = batch[0].config
    run = Recorder(batch, callback, every, t0, where, choice)
    engine = images = None
    try:
        try:
            for index, (size, steps) in enumerate(config.schedule):
                # 1. Images at this scale: each job's start (the previous
                #    scale's result, upsampled, after the first).
                shape = members[0].scenes[index].content.shape
                if device.kind == "CPU":  # host memory; a GPU's out-of-memory error is caught below
                    check_memory(config, *shape[:2], batch=len(members))
                starts = None if images is None else np.stack([resize(image, shape[:2]) for image in images])
                # 2, 3. Targets and an engine for this scale (with the last
                #    scale's Adam moments, resized, if asked).
                moments = adam_moments(engine) if engine is not None and config.scale_warm_start else None
                if engine is not None:
                    engine.release()
                    engine = None
                engine = _engine(members, index, strategy, starts)
                carry_adam(engine, moments)
                if index == 0:
                    run.timings["setup"] = time.perf_counter() - t0
                run.begin_scale(index, size, engine.problem, [m.scenes[index].present for m in members])
                # 4. Optimise; the results start the next scale.
                try:
                    if config.optimizer == "adam":
                        adam(engine, config, steps, run.report)
                        images = engine.problem.image.numpy()
                    else:
                        images, _ = lbfgs(engine, config, steps, run.report)
                finally:  # stopped or not, the PNG records what a resumed run needs
                    run.adam = adam_record(engine)
        except KeyboardInterrupt:
            if run.problem is None:  # nothing made yet: there is nothing to return
                raise
            run.stopped = "interrupted"
        except EarlyEnd as e:
            run.stopped = str(e)
        except tf.errors.ResourceExhaustedError:
            raise _out_of_memory(where, len(members), shape, config) from None
        return [run.result(j) for j in range(len(batch))]
    finally:  # the results are read: the next run of this shape may have the engine
        if engine is not None:
            engine.release()
