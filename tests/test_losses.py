"""The losses against independent NumPy computations of the report's
formulas, and their gradients against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nst import Config
from nst.core import losses as L
from nst.core.features import Features

RNG = np.random.default_rng(0)


def np_gram(f: np.ndarray) -> np.ndarray:
    """G = F F^T with F as channels x positions, per batch element."""
    b, h, w, c = f.shape
    flat = f.reshape(b, h * w, c).transpose(0, 2, 1)  # (b, N, M)
    return flat @ flat.transpose(0, 2, 1)


def np_style(f: np.ndarray, a: np.ndarray) -> np.ndarray:
    _, h, w, n = f.shape
    m = h * w
    return ((np_gram(f) - a) ** 2).sum(axis=(1, 2)) / (4.0 * n**2 * m**2)


@pytest.fixture
def feats() -> tuple[np.ndarray, np.ndarray]:
    return RNG.normal(size=(2, 5, 7, 4)), RNG.normal(size=(2, 5, 7, 4))


def test_gram_matrix_is_f_f_transpose(feats):
    f, _ = feats
    g = L.gram_matrix(tf.constant(f)).numpy()
    assert g.shape == (2, 4, 4)
    np.testing.assert_allclose(g, np_gram(f), rtol=1e-12)


def test_content_loss_is_half_sum_of_squares(feats):
    f, p = feats
    expected = 0.5 * ((f - p) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(L.content_loss(tf.constant(f), tf.constant(p)).numpy(), expected, rtol=1e-12)


def test_style_loss_is_report_normalisation(feats):
    f, s = feats
    a = np_gram(s)
    np.testing.assert_allclose(L.style_loss(tf.constant(f), tf.constant(a)).numpy(), np_style(f, a), rtol=1e-12)
    # Zero when the Gram matrices agree, whatever the features.
    np.testing.assert_allclose(L.style_loss(tf.constant(f), tf.constant(np_gram(f))).numpy(), 0.0, atol=1e-12)


def test_gatys_form_is_the_authors_code(feats):
    """leongatys/PytorchNeuralStyleTransfer: MSE of the content, and for
    style MSE(G/M, A/M) with weight 1e3 / N^2 = beta x this term."""
    f, s = feats
    _, h, w, n = f.shape
    m = h * w
    form = L.GATYS
    target = form.style_target(tf.constant(s), m).numpy()
    np.testing.assert_allclose(target, np_gram(s) / m, rtol=1e-12)
    expected = ((np_gram(f) / m - np_gram(s) / m) ** 2).mean(axis=(1, 2)) / n**2
    np.testing.assert_allclose(form.style(tf.constant(f), tf.constant(target)).numpy(), expected, rtol=1e-12)
    # It is the report's E_l times 4 / N^2: the same term, weighed differently.
    np.testing.assert_allclose(expected, 4 * np_style(f, np_gram(s)) / n**2, rtol=1e-12)
    p = s[:, ::-1]
    np.testing.assert_allclose(form.content(tf.constant(f), tf.constant(p)).numpy(), ((f - p) ** 2).mean((1, 2, 3)))


def test_style_loss_float32_matches_float64(feats):
    f, s = feats
    f32 = 100 * f.astype(np.float32)  # VGG activations are large
    a32 = np_gram(100 * s).astype(np.float32)
    got = L.style_loss(tf.constant(f32), tf.constant(a32)).numpy()
    np.testing.assert_allclose(got, np_style(100 * f, np_gram(100 * s)), rtol=1e-5)


def test_style_target_rescales_gram_to_output_positions():
    s = RNG.normal(size=(1, 4, 6, 3))
    np.testing.assert_allclose(L.style_target(tf.constant(s), 24).numpy(), np_gram(s), rtol=1e-12)
    np.testing.assert_allclose(L.style_target(tf.constant(s), 96).numpy(), 4 * np_gram(s), rtol=1e-12)


def np_tv(x):
    """Half the sum of squared neighbour differences, on the 0-255 scale."""
    v = 255.0 * x
    return 0.5 * ((np.diff(v, axis=1) ** 2).sum(axis=(1, 2, 3)) + (np.diff(v, axis=2) ** 2).sum(axis=(1, 2, 3)))


def test_total_variation_matches_numpy():
    x = RNG.uniform(size=(2, 6, 5, 3))
    np.testing.assert_allclose(L.total_variation_loss(tf.constant(x)).numpy(), np_tv(x), rtol=1e-12)
    # The tutorial's form stays tf.image.total_variation (absolute differences in [0, 1]).
    expected = np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(L.tutorial_total_variation(tf.constant(x)).numpy(), expected, rtol=1e-12)


def test_tv_gradient_per_pixel_does_not_depend_on_the_image_size():
    """Like the content loss's: the same local pattern, tiled over a larger
    image, gives the same gradient at an interior pixel."""
    tile = RNG.uniform(size=(1, 8, 8, 3))
    gradients = []
    for reps in (2, 6):
        x = tf.constant(np.tile(tile, (1, reps, reps, 1)))
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = L.total_variation_loss(x)
        gradients.append(tape.gradient(loss, x).numpy()[0, 4:12, 4:12])
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-10)


def test_tutorial_forms_match_tutorial_definitions(feats):
    f, s = feats
    m = f.shape[1] * f.shape[2]
    a = np_gram(s) / m
    np.testing.assert_allclose(
        L.tutorial_style_loss(tf.constant(f), tf.constant(a)).numpy(),
        ((np_gram(f) / m - a) ** 2).mean(axis=(1, 2)),
        rtol=1e-12,
    )
    np.testing.assert_allclose(L.tutorial_style_target(tf.constant(s), 999).numpy(), a, rtol=1e-12)
    np.testing.assert_allclose(
        L.tutorial_content_loss(tf.constant(f), tf.constant(s)).numpy(), ((f - s) ** 2).mean(axis=(1, 2, 3))
    )


def test_objective_combines_terms_with_weights():
    image = tf.constant(RNG.uniform(size=(1, 6, 6, 3)))
    style = [tf.constant(RNG.normal(size=(1, 6, 6, 2))), tf.constant(RNG.normal(size=(1, 3, 3, 4)))]
    content = [tf.constant(RNG.normal(size=(1, 3, 3, 4)))]
    targets = L.Targets(
        content=[tf.zeros_like(content[0])], style=[tf.zeros((1, 2, 2), tf.float64), tf.zeros((1, 4, 4), tf.float64)]
    )
    config = Config(
        content_layers=("block2_conv1",),
        style_layers=("block1_conv1", "block2_conv1"),
        style_layer_weights=(0.25, 2.0),
        content_weight=3.0,
        style_weight=7.0,
        tv_weight=0.5,
    )
    terms = L.objective(image, Features(style=style, content=content), targets, config)
    e1 = np_style(style[0].numpy(), 0)
    e2 = np_style(style[1].numpy(), 0)
    c = 0.5 * (content[0].numpy() ** 2).sum()
    tv = np_tv(image.numpy())
    np.testing.assert_allclose(terms["style/block1_conv1"], e1)
    np.testing.assert_allclose(terms["style"], 0.25 * e1 + 2.0 * e2)
    np.testing.assert_allclose(terms["content"], c)
    np.testing.assert_allclose(terms["total"], 3.0 * c + 7.0 * (0.25 * e1 + 2.0 * e2) + 0.5 * tv)


CONTENT_TARGET = tf.constant(RNG.normal(size=(1, 3, 4, 2)))
STYLE_TARGET = tf.constant(np_gram(RNG.normal(size=(1, 3, 4, 2))))


@pytest.mark.parametrize(
    "loss",
    [
        lambda x: L.content_loss(x, CONTENT_TARGET),
        lambda x: L.style_loss(x, STYLE_TARGET),
        lambda x: L.tutorial_style_loss(x, STYLE_TARGET / 12),
    ],
    ids=["content", "style", "tutorial_style"],
)
def test_gradient_matches_finite_differences(loss):
    x = tf.constant(RNG.normal(size=(1, 3, 4, 2)))
    theoretical, numerical = tf.test.compute_gradient(loss, [x], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-5, atol=1e-8)


def test_tv_gradient_matches_finite_differences():
    x = tf.constant(RNG.uniform(size=(1, 3, 4, 3)))
    theoretical, numerical = tf.test.compute_gradient(L.total_variation_loss, [x], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], rtol=1e-6)
