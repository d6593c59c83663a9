"""The run: the objective falls, pixels stay in range, the best image is the
lowest-loss one, targets are computed once, stops keep the best image, and
(with the real block 1-3 weights) the style really transfers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf
from conftest import BLOCK13_LAYERS, TINY

import nst
from nst.core.features import Extractor, extractor_for
from nst.core.losses import Objective, make_targets, objective


def loss_of(image: np.ndarray, content: np.ndarray, style: np.ndarray, config: nst.Config) -> float:
    """The objective at ``image``, computed afresh (outside the run)."""
    extractor = extractor_for(config)
    targets = make_targets(extractor(content[None]), extractor(style[None]), config)
    x = tf.constant(image[None])
    return float(objective(x, extractor(x), targets, config)["total"][0])


@pytest.fixture(scope="module")
def run(content_image, style_image) -> nst.Result:
    return nst.stylize(content_image, style_image, **{**TINY, "steps": 8, "learning_rate": 0.05})


def test_objective_falls_and_pixels_stay_in_range(run):
    totals = run.history["total"]
    assert len(totals) == 9 and run.history["step"] == [float(k) for k in range(9)]
    assert totals[-1] < 0.9 * totals[0]
    for image in (run.image, run.best_image):
        assert image.shape == (24, 32, 3) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0


def test_best_image_is_the_lowest_loss_one(run, content_image, style_image):
    totals = run.history["total"]
    assert run.best_step == int(np.argmin(totals))
    assert run.best_loss == pytest.approx(min(totals), rel=1e-6)
    content = nst.io.images.load_image(content_image, size=32)
    style = nst.io.images.load_image(style_image, size=32)
    assert loss_of(run.best_image, content, style, run.config) == pytest.approx(run.best_loss, rel=1e-4)


def test_history_has_every_term_and_result_records_settings(run):
    assert {"total", "content", "style", "tv", "time", "style/block1_conv1", "style/block3_conv1"} <= set(run.history)
    layer_sum = sum(
        w * run.history[f"style/{name}"][3] for name, w in zip(run.config.style_layers, run.config.layer_weights)
    )
    assert run.history["style"][3] == pytest.approx(layer_sum, rel=1e-5)
    assert run.config.steps == 8 and run.config.weights == "random"
    assert run.metadata()["settings"]["learning_rate"] == 0.05
    assert run.timings["total"] >= run.timings["setup"] > 0 and run.stopped is None
    # Its repr is one short line, not the arrays and history (~8 kB).
    text = repr(run)
    assert len(text) < 200 and "\n" not in text and text.startswith("Result(") and "8 steps, best_loss=" in text


def test_targets_are_computed_once_not_per_step(content_image, style_image, monkeypatch):
    """Runs of 2 and 6 steps call the network as often: the 2 targets, one
    trace of the step and one of the final evaluation. Each has a seed of
    its own (an engine of its own: nothing an earlier test made is reused);
    the same run again compiles nothing and computes only the targets
    (images given as arrays are not remembered: `nst.core.targets`)."""
    calls = []
    original = Extractor.__call__
    monkeypatch.setattr(Extractor, "__call__", lambda self, x: calls.append(1) or original(self, x))
    counts = []
    for steps, seed in ((2, 171), (6, 172), (6, 172)):
        calls.clear()
        nst.stylize(content_image, style_image, **{**TINY, "steps": steps, "seed": seed})
        counts.append(len(calls))
    assert counts == [4, 4, 2]


def test_callback_gets_progress_every_n_steps_and_at_the_end(content_image, style_image):
    seen = []
    nst.stylize(content_image, style_image, **TINY, callback=seen.append, callback_every=3)
    assert [p.step for p in seen] == [0, 3, 4]
    last = seen[-1]
    assert last.steps == 4 and last.elapsed > 0 and set(last.losses) >= {"total", "content", "style"}
    assert last.image().shape == (24, 32, 3) and last.pil().size == (32, 24)


def test_progress_image_is_the_one_its_losses_belong_to(content_image, style_image):
    seen = []
    result = nst.stylize(content_image, style_image, **TINY, callback=lambda p: seen.append((p.losses, p.image())))
    content, style = (nst.io.images.load_image(x, size=32) for x in (content_image, style_image))
    for losses, image in (seen[0], seen[2], seen[-1]):
        assert loss_of(image, content, style, result.config) == pytest.approx(losses["total"], rel=1e-4)


def test_interrupt_keeps_the_best_image(content_image, style_image):
    def stop_at_3(progress):
        if progress.step == 3:
            raise KeyboardInterrupt

    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 50}, callback=stop_at_3)
    assert result.stopped == "interrupted"
    assert len(result.history["total"]) == 4 and result.best_step <= 3
    assert result.best_loss == pytest.approx(min(result.history["total"]), rel=1e-6)


def test_same_seed_same_result(content_image, style_image):
    a = nst.stylize(content_image, style_image, **TINY, init="noise")
    b = nst.stylize(content_image, style_image, **TINY, init="noise")
    np.testing.assert_array_equal(a.best_image, b.best_image)


def test_inits(content_image, style_image):
    start = {
        init: nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, init=init)
        for init in ("content", "style", "noise")
    }
    content = nst.io.images.load_image(content_image, size=32)
    assert start["content"].history["content"][0] == pytest.approx(0.0, abs=1e-3)
    assert start["noise"].history["content"][0] > 0
    assert start["style"].history["content"][0] > 0
    np.testing.assert_array_equal(content.shape, start["style"].image.shape)


def test_tutorial_preset_runs_with_its_normalisation(content_image, style_image):
    result = nst.stylize(
        content_image,
        style_image,
        preset="tutorial",
        size=32,
        steps=3,
        weights="random",
        seed=0,
        content_layers=("block2_conv2",),
        style_layers=("block1_conv1", "block2_conv1"),
    )
    assert result.config.loss_form == "tutorial" and result.config.tv_weight == 30.0
    h = result.history
    np.testing.assert_allclose(h["total"][1], 1e4 * h["content"][1] + 1e-2 * h["style"][1] + 30 * h["tv"][1], rtol=1e-5)


def test_preset_and_config_together_is_an_error(content_image, style_image):
    with pytest.raises(ValueError, match="not both"):
        nst.stylize(content_image, style_image, config=nst.Config(), preset="tutorial")


@pytest.mark.real_weights
def test_real_weights_transfer_the_style(block13_weights, content_image, style_image):
    """The issue's check, in the report's terms: alpha=1, beta=1e3, blocks 1-3."""
    result = nst.stylize(content_image, style_image, size=96, steps=60, weights=str(block13_weights), **BLOCK13_LAYERS)
    h = result.history
    assert result.best_loss < 0.1 * h["total"][0]
    assert h["style"][result.best_step] < h["style"][0] / 20
    # The content stays recognisable: the output's luminance still follows the photo's.
    content = nst.io.images.load_image(content_image, size=96)
    grey = lambda im: im @ np.array([0.299, 0.587, 0.114])
    assert np.corrcoef(grey(result.best_image).ravel(), grey(content).ravel())[0, 1] > 0.6


def test_steps_are_traced_once_per_scale(content_image, style_image, monkeypatch):
    """No retracing between steps: each scale traces its step and its final
    evaluation once, TensorFlow logs no retracing warning, and the same run
    again traces nothing (`nst.core.engine`)."""
    traced = []
    real = Objective.__call__
    monkeypatch.setattr(Objective, "__call__", lambda self, *args: traced.append(1) or real(self, *args))
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    settings = {**TINY, "scales": (24, 32), "steps": 6, "seed": 148}  # (a seed of its own: engines of its own)
    try:
        result = nst.stylize(content_image, style_image, **settings)
        assert len(traced) == 4  # 2 scales x (step, final evaluation), not one per step
        again = nst.stylize(content_image, style_image, **settings)
    finally:
        tf.get_logger().removeHandler(handler)
    assert len(result.history["total"]) == 14
    assert again.history["total"] == pytest.approx(result.history["total"], rel=1e-6)
    assert len(traced) == 4
    assert not [m for m in messages if "retracing" in m]


def test_runs_one_after_another_log_no_retracing_warning(content_image, style_image):
    """Runs of six shapes compile six engines' steps (`nst.core.engine`);
    TensorFlow must not read that as retracing in a loop (it counts traces
    per Python function, and warns from the fifth)."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    tf.get_logger().addHandler(handler)
    try:
        for size in (24, 28, 36, 40, 44, 52):
            nst.stylize(content_image, style_image, **{**TINY, "steps": 1, "size": size})
    finally:
        tf.get_logger().removeHandler(handler)
    assert not [m for m in messages if "retracing" in m]
