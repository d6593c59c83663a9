"""Controls beyond the report, each checked for the property it promises:
L-BFGS, coarse to fine, style blends and scale, colour preservation, init
from an image, repeatability."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf
from conftest import BLOCK13_LAYERS, TINY

import nst
from nst.core import scene
from nst.core.device import Device
from nst.core.features import Network, extractor_for, get_extractor
from nst.core.losses import make_targets, objective
from nst.core.optimizers import LBFGS
from nst.io import color
from nst.io.images import ImageError, load_image, save_image


def loss_at(image: np.ndarray, content: np.ndarray, style: np.ndarray, config: nst.Config) -> float:
    """The objective at ``image`` for inputs already at their sizes, computed afresh."""
    extractor = extractor_for(config)
    targets = make_targets(extractor(content[None]), extractor(style[None]), config)
    x = tf.constant(image[None])
    return float(objective(x, extractor(x), targets, config)["total"][0])


def bounded_quadratic(n: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """f(x) = 1/2 sum a (x - c)^2 with curvatures a over two orders of
    magnitude and a centre c partly outside [0, 1]: its minimum in the box is
    c clipped into it."""
    rng = np.random.default_rng(0)
    return np.logspace(-1, 1, n), rng.uniform(-0.5, 1.5, n), rng.uniform(0, 1, n)


def test_lbfgs_steps_to_the_minimum_in_the_box_like_scipys_lbfgsb():
    a, c, x0 = bounded_quadratic()
    minimum = np.clip(c, 0, 1)
    state, points = LBFGS(x0.reshape(6, 10), memory=10), []
    for _ in range(60):
        x = state.point.astype(np.float64).ravel()
        points.append(x)
        state.tell(float(0.5 * a @ (x - c) ** 2), (a * (x - c)).reshape(6, 10))
    assert all(x.min() >= 0 and x.max() <= 1 for x in points)
    np.testing.assert_allclose(state.accepted.ravel(), minimum, atol=1e-4)
    # SciPy's L-BFGS-B (an independent implementation) needs about as many evaluations.
    seen = []

    def reference(x: np.ndarray) -> tuple[float, np.ndarray]:
        seen.append(x)
        return 0.5 * a @ (x - c) ** 2, a * (x - c)

    bounds = scipy.optimize.Bounds(np.zeros(60), np.ones(60))
    scipy.optimize.minimize(
        reference, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxcor": 10, "ftol": 0, "gtol": 1e-7}
    )
    ours, theirs = (next(k for k, x in enumerate(xs) if np.max(np.abs(x - minimum)) < 1e-4) for xs in (points, seen))
    assert ours <= 1.2 * theirs, (ours, theirs)


def test_lbfgs_restarts_from_its_accepted_image_and_forgets_its_curvature():
    a, c, x0 = bounded_quadratic()
    state = LBFGS(x0, memory=10)
    for _ in range(8):
        x = state.point.astype(np.float64)
        state.tell(float(0.5 * a @ (x - c) ** 2), a * (x - c))
    assert state.pairs and not np.array_equal(state.point, state.accepted)
    state.restart()
    assert not state.pairs and np.array_equal(state.point, state.accepted)


def test_lbfgs_lowers_the_objective_within_the_box_and_counts_evaluations(content_image, style_image):
    seen = []
    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 6}, optimizer="lbfgs", callback=seen.append)
    h = result.history
    assert h["step"] == [float(k) for k in range(7)]  # 1 + 6 function evaluations, no more
    assert [p.step for p in seen] == list(range(7))
    assert min(h["total"]) < 0.9 * h["total"][0]
    for image in (result.image, result.best_image):
        assert image.min() >= 0.0 and image.max() <= 1.0
    assert result.best_loss == pytest.approx(min(h["total"]), rel=1e-6)
    content, style = load_image(content_image, 32), load_image(style_image, 32)
    assert loss_at(result.best_image, content, style, result.config) == pytest.approx(result.best_loss, rel=1e-4)


def test_lbfgs_interrupt_keeps_the_best_image(content_image, style_image):
    def stop_at_4(progress):
        if progress.step == 4:
            raise KeyboardInterrupt

    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 50}, optimizer="lbfgs", callback=stop_at_4)
    assert result.stopped == "interrupted" and len(result.history["total"]) == 5
    assert result.best_loss == pytest.approx(min(result.history["total"]), rel=1e-6)


def test_coarse_to_fine_starts_each_scale_from_the_last_and_ends_at_full_size(content_image, style_image):
    starts = {}
    settings = {**TINY, "scales": (16, 32), "scale_steps": (3, 2)}
    result = nst.stylize(
        content_image, style_image, **settings, callback=lambda p: starts.setdefault(p.scale, p.image())
    )
    h = result.history
    assert h["size"] == [16.0] * 4 + [32.0] * 3 and h["step"] == [0, 1, 2, 3, 3, 4, 5]
    assert result.image.shape == (24, 32, 3) and result.config.size == 32
    # The second scale starts from the first's result, upsampled.
    first = nst.stylize(content_image, style_image, **{**TINY, "size": 16, "steps": 3})
    upsampled = tf.image.resize(first.image, (24, 32), method="bicubic").numpy().clip(0, 1)
    np.testing.assert_allclose(starts[1], upsampled, atol=1e-5)
    # Its targets are the full-size inputs', and the best image is from the last scale.
    content, style = load_image(content_image, 32), load_image(style_image, 32)
    assert loss_at(result.best_image, content, style, result.config) == pytest.approx(result.best_loss, rel=1e-4)
    assert result.best_step >= 3 and result.start_loss == h["total"][4]


def test_style_blend_targets_are_the_weighted_gram_matrices(content_image, style_image):
    other = np.ascontiguousarray(style_image[::-1, ::-1] ** 2)
    blend = (0.25, 0.75)
    result = nst.stylize(content_image, [style_image, other], **{**TINY, "steps": 1}, style_blend=(1.0, 3.0))
    extractor = get_extractor(Network(TINY["style_layers"], TINY["content_layers"], "random", 0))
    content = load_image(content_image, 32)
    styles = [load_image(s, 32) for s in (style_image, other)]
    for i, layer in enumerate(TINY["style_layers"]):
        f = extractor(content[None]).style[i].numpy()[0].astype(np.float64)
        n, m = f.shape[-1], f.shape[0] * f.shape[1]
        f = f.reshape(m, n)
        grams = []
        for s in styles:
            fs = extractor(s[None]).style[i].numpy()[0].astype(np.float64)
            fs = fs.reshape(-1, n)
            grams.append(fs.T @ fs * (m / fs.shape[0]))
        a = blend[0] * grams[0] + blend[1] * grams[1]
        expected = np.sum((f.T @ f - a) ** 2) / (4 * n**2 * m**2)
        assert result.history[f"style/{layer}"][0] == pytest.approx(expected, rel=1e-3)


def test_one_style_weighted_fully_is_that_style_alone(content_image, style_image):
    alone = nst.stylize(content_image, style_image, **TINY)
    blended = nst.stylize(content_image, [style_image, content_image], **TINY, style_blend=(1.0, 0.0))
    np.testing.assert_allclose(blended.history["total"], alone.history["total"], rtol=1e-5)


def test_style_scale_sizes_the_style_image(content_image, style_image, monkeypatch):
    sizes = []
    original = scene.load_image
    monkeypatch.setattr(
        scene,
        "load_image",
        lambda source, size, max_pixels: sizes.append(size) or original(source, size, max_pixels),
    )
    nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, style_scale=0.5)
    assert sizes == [32, 16]


def test_luminance_transfer_keeps_the_contents_chroma(content_image, style_image):
    result = nst.stylize(content_image, style_image, **TINY, preserve_color="luminance")
    content = load_image(content_image, 32)
    chroma = lambda im: color.rgb_to_yiq(im)[..., 1:]
    for image in (result.image, result.best_image):
        difference = np.abs(chroma(image) - chroma(content))
        # Equal except where the recombined colour leaves [0, 1] and is clipped.
        assert np.median(difference) < 1e-5 and np.percentile(difference, 95) < 0.02
    # The transfer itself happened on luminance: the output is not the content.
    assert np.abs(color.luminance(result.image) - color.luminance(content)).max() > 0.01


def test_histogram_mode_gives_the_style_the_contents_colour_statistics(content_image, style_image, monkeypatch):
    matched = []
    original = color.match_color
    monkeypatch.setattr(color, "match_color", lambda s, r: matched.append(original(s, r)) or matched[-1])
    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, preserve_color="histogram")
    content = load_image(content_image, 32).reshape(-1, 3)
    style = matched[0].reshape(-1, 3)
    np.testing.assert_allclose(style.mean(0), content.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.cov(style, rowvar=False), np.cov(content, rowvar=False), atol=1e-5)
    plain = nst.stylize(content_image, style_image, **{**TINY, "steps": 1})
    assert result.history["style"][0] != pytest.approx(plain.history["style"][0], rel=1e-3)


def test_init_from_an_image_path(content_image, style_image, tmp_path):
    path = save_image(tmp_path / "start.png", load_image(content_image, 32))
    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, init=str(path))
    noise = nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, init="noise")
    # The content saved as a PNG: only 8-bit rounding away from the content.
    assert result.history["content"][0] < 1e-3 * noise.history["content"][0]
    with pytest.raises(ImageError, match=r"nosie.*init is content, style, noise, gray, style-mean or an image"):
        nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, init="nosie")


def test_style_layer_weights_pick_the_layers_that_count(content_image, style_image):
    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, style_layer_weights=(0.0, 0.0, 2.0))
    h = result.history
    assert h["style"][0] == pytest.approx(2.0 * h["style/block3_conv1"][0], rel=1e-6)
    assert h["style/block1_conv1"][0] > 0  # still reported, just not counted


def test_average_pooling_runs_and_changes_the_objective(content_image, style_image):
    pooled = {p: nst.stylize(content_image, style_image, **{**TINY, "steps": 1}, pooling=p) for p in ("max", "avg")}
    # block1_conv1 comes before any pooling; block2/3 come after it.
    first, deep = "style/block1_conv1", "style/block3_conv1"
    assert pooled["avg"].history[first][0] == pytest.approx(pooled["max"].history[first][0], rel=1e-5)
    assert pooled["avg"].history[deep][0] != pytest.approx(pooled["max"].history[deep][0], rel=1e-2)
    assert pooled["avg"].config.pooling == "avg"


def test_a_seed_on_a_gpu_turns_on_op_determinism_and_xla_off(monkeypatch):
    enabled = []
    monkeypatch.setattr(tf.config.experimental, "enable_op_determinism", lambda: enabled.append(True))
    gpu = Device("GPU", "a test stand-in", tf.distribute.get_strategy(), tf.distribute.get_strategy())
    with pytest.warns(UserWarning, match="XLA off"):
        assert scene.repeatable(nst.Config(seed=1), gpu).jit_compile is False
    assert enabled == [True]
    assert scene.repeatable(nst.Config(), gpu).jit_compile is None  # no seed: untouched (left to nst.core.execution)
    cpu = Device("CPU", "a test stand-in", tf.distribute.get_strategy(), tf.distribute.get_strategy())
    assert scene.repeatable(nst.Config(seed=1), cpu).jit_compile is None  # bit-identical already


@pytest.mark.real_weights
def test_lbfgs_and_coarse_to_fine_beat_adam_with_real_weights(block13_weights, content_image, style_image):
    """Same number of full-size evaluations: L-BFGS reaches a lower objective
    than Adam, and so does Adam started from a half-size result."""
    common = {"size": 96, "steps": 30, "weights": str(block13_weights), "style_weight": 1e4, **BLOCK13_LAYERS}
    adam = nst.stylize(content_image, style_image, **common)
    lbfgs = nst.stylize(content_image, style_image, **common, optimizer="lbfgs")
    coarse = nst.stylize(content_image, style_image, **common, scales=(48, 96))
    assert lbfgs.best_loss < 0.8 * adam.best_loss
    assert coarse.best_loss < adam.best_loss


def roughness(image: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels."""
    return float(np.abs(np.diff(image, axis=0)).mean() + np.abs(np.diff(image, axis=1)).mean())


@pytest.mark.real_weights
def test_the_documented_tv_weights_smooth_the_image(block13_weights, content_image, style_image):
    """gamma's range spans 'no effect' to 'too smooth' (checked by eye at 256
    px: 10 barely, 100 visibly, 10^4 a blur). A smaller image needs a larger
    gamma for the same effect (the style term's pull on a pixel grows as 1/M):
    at 128 px after 40 steps with the real weights, gamma = 1 stays within
    rounding of no TV, 10^3 smooths and 10^5 smooths far more."""
    gammas = [0.0, 1.0, 1e3, 1e5]
    jobs = nst.grid([content_image], [style_image], tv_weight=gammas)
    results = nst.stylize_many(jobs, preset="blocks1-3", size=128, steps=40, weights=str(block13_weights), seed=0)
    rough = [roughness(r.best_image) for r in results]
    assert abs(rough[1] - rough[0]) < 0.02 * rough[0]  # gamma 1: no visible effect
    assert rough[2] < 0.95 * rough[0] and rough[3] < 0.6 * rough[2]  # then smoother and smoother
    # With gamma = 0 the objective is the report's exactly: the TV term adds nothing.
    h = results[0].history
    np.testing.assert_allclose(h["total"], np.array(h["content"]) + 1e4 * np.array(h["style"]), rtol=1e-6)
