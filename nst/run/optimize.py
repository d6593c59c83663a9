"""`stylize` and `stylize_many`: runs to their end.

`stylize` runs one image; `stylize_many` runs several independent ones (a
sweep, see `grid`) as batches, spread over the device's replicas, each
batch through the one run driver (`nst.run.driver.Run`: its scales, targets,
engines and steps). The images are a `tf.Variable` of pixels in [0, 1],
(batch, height, width, channels); `stylize` is a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nst.base.config import Config
from nst.core.scene import Prepared
from nst.io.images import ImageSource
from nst.io.jobs import Job, config_for, grid
from nst.run.driver import Run
from nst.run.record import Progress, Result

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
    base = config_for(config, overrides)
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


def _run_batch(batch: list[Prepared], callback: Callable | None, every: int) -> list[Result]:
    """Run ``batch`` as one batch of images; one `Result` per job."""
    run = Run(batch, callback, every)
    try:
        run.drive()
        return run.results()
    finally:  # the results are read: the next run of this shape may have the engine
        run.release()
