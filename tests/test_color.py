"""Colour preservation helpers, checked against their definitions on real images."""

from __future__ import annotations

import numpy as np

from nst.io import color


def test_yiq_round_trip_and_luminance_weights(content_image):
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(content_image)), content_image, atol=1e-5)
    grey = np.full((2, 2, 3), 0.4, np.float32)
    yiq = color.rgb_to_yiq(grey)
    np.testing.assert_allclose(yiq[..., 0], 0.4, atol=1e-6)  # Y of a grey is its value
    np.testing.assert_allclose(yiq[..., 1:], 0.0, atol=1e-6)  # and it has no chroma
    np.testing.assert_allclose(color.luminance(content_image)[..., 0], content_image @ [0.299, 0.587, 0.114], atol=1e-5)


def test_match_color_gives_the_references_mean_and_covariance(content_image, style_image):
    matched = color.match_color(style_image, content_image)
    assert matched.shape == style_image.shape
    got, want = matched.reshape(-1, 3), content_image.reshape(-1, 3)
    np.testing.assert_allclose(got.mean(0), want.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.cov(got, rowvar=False), np.cov(want, rowvar=False), atol=1e-5)


def test_match_color_of_a_flat_image_is_finite():
    flat = np.full((8, 8, 3), 0.5, np.float32)
    out = color.match_color(flat, np.random.default_rng(0).uniform(size=(8, 8, 3)))
    assert np.isfinite(out).all()


def test_match_luminance_and_recombine(content_image, style_image):
    y = color.luminance(content_image)
    matched = color.match_luminance(color.luminance(style_image), y)
    assert abs(matched.mean() - y.mean()) < 1e-5
    assert abs(matched.std() - y.std()) < 1e-5
    brighter = color.with_chroma(np.clip(y + 0.1, 0, 1), content_image)
    assert brighter.shape == content_image.shape and brighter.min() >= 0 and brighter.max() <= 1
    inside = (brighter > 0) & (brighter < 1)  # unclipped pixels keep the content's I and Q exactly
    inside = inside.all(-1)
    np.testing.assert_allclose(
        color.rgb_to_yiq(brighter)[inside][:, 1:], color.rgb_to_yiq(content_image)[inside][:, 1:], atol=1e-5
    )
