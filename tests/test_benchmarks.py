"""The benchmark's baseline is the tutorial's loop, and with the weights the
benchmark gives it, it minimises exactly the report's objective (so "time to
the baseline's objective" compares like with like)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import nst
from nst.core.features import extractor_for
from nst.core.losses import make_targets, objective

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tutorial import Tutorial, gram_matrix


def test_tutorial_gram_is_divided_by_positions():
    x = tf.random.normal((1, 3, 5, 4))
    f = x.numpy()[0].reshape(15, 4)
    np.testing.assert_allclose(gram_matrix(x)[0], f.T @ f / 15, rtol=1e-5)


def test_weighted_tutorial_loss_is_the_reports_objective(block13_weights, content_image, style_image):
    config = nst.preset("blocks1-3", weights=str(block13_weights), size=32)
    content = nst.io.images.load_image(content_image, 32)
    style = nst.io.images.load_image(style_image, 32)
    h, w = content.shape[:2]
    n, m = 256, (h // 4) * (w // 4)
    baseline = Tutorial(
        content,
        style,
        style_layers=config.style_layers,
        content_layers=config.content_layers,
        weights=dict(np.load(block13_weights)),
        content_weight=config.content_weight * n * m / 2,
        style_weight=config.style_weight / 4,
        tv_weight=0.0,
    )
    image = np.clip(content + np.random.default_rng(0).normal(0, 0.1, content.shape), 0, 1).astype(np.float32)
    extractor = extractor_for(config)
    targets = make_targets(extractor(content[None]), extractor(style[None]), config)
    x = tf.constant(image[None])
    expected = float(objective(x, extractor(x), targets, config)["total"][0])
    assert float(baseline.loss(x)) == pytest.approx(expected, rel=1e-4)
    before = float(baseline.step())
    assert float(baseline.step()) < before  # and its step lowers it
