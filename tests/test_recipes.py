"""crowsonkb/style-transfer-pytorch's recipe in nst: the Wasserstein-2
style loss, the moving average of the iterates, replicate padding, L2
pooling and the flat starts, each checked against an independent
computation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from conftest import BLOCK13_LAYERS, IMAGES
from test_tiles import assert_tiled_equals_untiled, tile_problems

import nst
from nst.base.backend import tf
from nst.base.config import ConfigError
from nst.core import engine, execution, optimizers, scene
from nst.core.device import current as current_device
from nst.core.features import L2_SCALE, Extractor, Network, extractor_for
from nst.core.losses import SCALED, form_of, gram_matrix, mean_total_variation
from nst.core.wasserstein import W2_EPSILON, moment_features
from nst.io.images import load_image, read_metadata
from nst.run import driver
from nst.ui import cli, options

W2 = {"style_loss": "w2", "jit_compile": False}


def _w2_numpy(x: np.ndarray, s: np.ndarray) -> float:
    """W2 between Gaussian fits of two sets of features (positions x N), in float64 with SciPy's sqrtm."""
    n = x.shape[1]
    cx, cs = (np.cov(f.T, bias=True) + W2_EPSILON * np.eye(n) for f in (x, s))
    root = scipy.linalg.sqrtm(cs)
    cross = scipy.linalg.sqrtm(root @ cx @ root)
    return float((np.sum((x.mean(0) - s.mean(0)) ** 2) + np.trace(cx + cs - 2 * cross).real) / n)


@pytest.fixture(scope="module")
def w2_features(block13_weights):
    """The exact block 1-3 features of a photo and a painting at 64 px, and the W2 form."""
    config = nst.preset("blocks1-3", weights=str(block13_weights), size=64, style_loss="w2")
    if not IMAGES.is_dir():
        pytest.skip("needs the sample images of ../shared")
    extractor = extractor_for(config)
    photo, painting = (load_image(IMAGES / name, 64) for name in ("tubingen.jpg", "starry_night.jpg"))
    return extractor(tf.constant(photo[None])).style, extractor(tf.constant(painting[None])).style, form_of(config)


def _flat(f: tf.Tensor) -> np.ndarray:
    return f.numpy()[0].reshape(-1, f.shape[-1]).astype(np.float64)


def test_w2_equals_scipys_sqrtm_in_float64(w2_features):
    photo, painting, form = w2_features
    for x, s in zip(photo, painting):
        got = float(form.style(x, form.prepare(form.style_target(s, x.shape[1] * x.shape[2])))[0])
        assert got == pytest.approx(_w2_numpy(_flat(x), _flat(s)), rel=1e-3)


def test_w2_gradient_matches_finite_differences(w2_features):
    photo, painting, form = w2_features
    x, s = photo[1], painting[1]  # block2_conv1: 128 channels, 32 x 24 positions
    target = form.prepare(form.style_target(s, 1))
    variable = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = form.style(variable, target)
    gradient = tape.gradient(loss, variable).numpy()
    rng = np.random.default_rng(0)
    for _ in range(3):
        direction = rng.standard_normal(x.shape).astype(np.float32)
        h = 1e-2 * float(np.abs(x.numpy()).mean())
        up, down = (float(form.style(x + sign * h * direction, target)[0]) for sign in (1, -1))
        assert (up - down) / (2 * h) == pytest.approx(float(np.sum(gradient * direction)), rel=2e-3)


def test_w2_with_a_region_uses_its_positions_moments(w2_features):
    """A region's term is the W2 of the features inside it, weighed by its share of the image."""
    photo, painting, form = w2_features
    x, s = photo[0], painting[0]
    h, w = x.shape[1:3]
    masks = np.zeros((1, 2, h, w), np.float32)
    masks[0, 0, :, : w // 3] = 1  # the left third, and the rest
    masks[0, 1, :, w // 3 :] = 1
    target = form.prepare(form.style_target(s, 1))
    grams = tf.einsum("brhwi,bhwj->brij", moment_features(x)[:, None] * masks[..., None], moment_features(x))
    mass = tf.constant(masks.sum(axis=(2, 3)))
    got = form.guided_style(grams, tf.stack([target, target], axis=1), mass, h * w).numpy()[0]
    flat, style = _flat(x).reshape(h, w, -1), _flat(s)
    expected = sum(m.sum() / (h * w) * _w2_numpy(flat[m > 0], style) for m in masks[0])
    assert got == pytest.approx(expected, rel=1e-3)


def test_w2_blends_means_and_second_moments(w2_features):
    """Two styles blend as the Gaussian of the mixed moments (crowsonkb's), not as mixed distances."""
    photo, painting, form = w2_features
    a, b = painting[0], photo[0]
    blended = 0.25 * form.style_target(a, 1) + 0.75 * form.style_target(b, 1)
    moments = 0.25 * gram_matrix(moment_features(a)) / (a.shape[1] * a.shape[2]) + 0.75 * gram_matrix(
        moment_features(b)
    ) / (b.shape[1] * b.shape[2])
    np.testing.assert_allclose(blended.numpy(), moments.numpy(), rtol=1e-5)
    # The run's target is the blend's Gaussian, its root taken once (`LossForm.prepare`).
    x = _flat(photo[0])
    fa, fb = _flat(a), _flat(b)
    mean = 0.25 * fa.mean(0) + 0.75 * fb.mean(0)
    second = 0.25 * fa.T @ fa / len(fa) + 0.75 * fb.T @ fb / len(fb)
    cs = second - np.outer(mean, mean) + W2_EPSILON * np.eye(len(mean))
    cx = np.cov(x.T, bias=True) + W2_EPSILON * np.eye(len(mean))
    root = scipy.linalg.sqrtm(cs)
    expected = np.sum((x.mean(0) - mean) ** 2) + np.trace(cx + cs - 2 * scipy.linalg.sqrtm(root @ cx @ root)).real
    got = float(form.style(photo[0], form.prepare(blended))[0])
    assert got == pytest.approx(expected / len(mean), rel=1e-3)


def test_w2_tiles_exactly_with_and_without_regions(block13_weights):
    """W2's moments are sums over positions, so tiles add them up. Its
    gradient goes through the inverse square root of covariance products
    with condition numbers of 1e9, which magnifies float32's rounding of
    the sums: measured within 1.1e-5 of the largest value; held to 1e-4.
    The targets hold the square root of the style's covariance, which
    magnifies the rounding of its moments the same way: within 4.8e-5 of
    the largest value; held to 2e-4."""
    for regions in (False, True):
        untiled, tiled = tile_problems(
            block13_weights, "blocks1-3", 64, 32, styles=2, regions=regions, target_rtol=2e-4, **W2
        )
        assert_tiled_equals_untiled(untiled, tiled, gradient_rtol=1e-4)


def test_w2_runs_on_tensorflows_kernels_on_a_cpu_unless_told(block13_weights):
    config = nst.Config(weights=str(block13_weights), style_loss="w2", **BLOCK13_LAYERS)
    cpu = current_device("cpu")
    assert not execution.unmeasured(config, cpu).jit_compile
    assert all(not p.jit_compile for p in execution.candidates(config, cpu)[0])
    assert execution.unmeasured(config.replace(jit_compile=True), cpu).jit_compile


def test_a_w2_run_lowers_its_style_term(block13_weights, content_image, style_image):
    result = nst.stylize(
        content_image,
        style_image,
        weights=str(block13_weights),
        size=48,
        steps=30,
        seed=0,
        init="noise",
        content_weight=0.0,
        style_weight=1.0,
        style_loss="w2",
        **BLOCK13_LAYERS,
    )
    assert result.history["style"][-1] < 0.3 * result.history["style"][0]  # measured: 0.24


@pytest.fixture
def iterates(monkeypatch) -> list[np.ndarray]:
    """The images of the last engine acquired: its start and each Adam step's result."""
    seen: list[np.ndarray] = []
    real = engine.acquire

    def acquire(*args):
        acquired = real(*args)
        step = acquired.step
        seen[:] = [acquired.problem.image.numpy()]

        def recorded():
            values = step()
            seen.append(acquired.problem.image.numpy())
            return values

        monkeypatch.setattr(acquired, "step", recorded)  # undone after the test: the engine is kept
        return acquired

    monkeypatch.setattr(engine, "acquire", acquire)
    return seen


def test_the_output_is_the_bias_corrected_average_of_the_iterates(
    block13_weights, content_image, style_image, iterates, tmp_path
):
    decay, shown = 0.8, []
    result = nst.stylize(
        content_image,
        style_image,
        weights=str(block13_weights),
        size=48,
        steps=6,
        seed=0,
        ema=decay,
        callback=lambda p: shown.append(p.image()),
        **BLOCK13_LAYERS,
    )
    assert len(iterates) == 7
    # m = (1 - d) sum_k d^(6 - k) x_k, divided by 1 - d^7 (the weights' sum).
    weights = [(1 - decay) * decay ** (6 - k) / (1 - decay**7) for k in range(7)]
    average = sum(w * x for w, x in zip(weights, iterates))[0]
    np.testing.assert_allclose(result.best_image, average, atol=2e-6)
    np.testing.assert_array_equal(result.image, result.best_image)  # the last evaluation is the average's
    np.testing.assert_array_equal(shown[-1], result.best_image)  # and so is the preview
    assert result.best_step == 6 and result.best_loss == result.history["total"][-1]
    saved = load_image(result.save(tmp_path / "average.png"), 48)
    assert np.abs(saved - result.best_image).max() <= 1 / 255


def test_averaging_is_for_adam(block13_weights):
    with pytest.raises(ConfigError, match="ema averages Adam's iterates"):
        nst.Config(optimizer="lbfgs", ema=0.99).validate()
    with pytest.raises(ConfigError, match="ema must be"):
        nst.Config(ema=1.0).validate()


@pytest.fixture(scope="module")
def pixels() -> tf.Tensor:
    return tf.constant(np.random.default_rng(4).uniform(size=(1, 12, 16, 3)).astype(np.float32))


def test_replicate_padding_repeats_the_edge_pixels(pixels):
    with pytest.warns(UserWarning, match="random weights"):
        zero = Extractor(Network(("block1_conv1", "block2_conv1"), (), weights="random", seed=3))
    with pytest.warns(UserWarning, match="random weights"):
        edge = Extractor(Network(("block1_conv1", "block2_conv1"), (), weights="random", seed=3, padding="replicate"))
    kernel, bias = zero.model.get_layer("block1_conv1").get_weights()
    x = tf.keras.applications.vgg19.preprocess_input(pixels * 255.0).numpy()
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="edge")
    expected = np.maximum(tf.nn.conv2d(padded, kernel, 1, "VALID").numpy() + bias, 0)
    got, plain = edge(pixels).style[0].numpy(), zero(pixels).style[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], plain[:, 1:-1, 1:-1], rtol=1e-5, atol=1e-3)  # inside: the same
    assert not np.allclose(got[:, 0], plain[:, 0], atol=1e-2)  # along the edge: not


def test_l2_pooling_is_the_scaled_norm_of_each_window(pixels):
    with pytest.warns(UserWarning, match="random weights"):
        extractor = Extractor(Network(("block1_conv2", "block2_conv1"), (), weights="random", seed=3, pooling="l2"))
    before = extractor.model.get_layer("block1_conv2")
    x = tf.keras.applications.vgg19.preprocess_input(pixels * 255.0)
    block1 = before(extractor.model.get_layer("block1_conv1")(x)).numpy()
    norms = L2_SCALE * np.sqrt(np.square(block1).reshape(1, 6, 2, 8, 2, -1).sum(axis=(2, 4)))
    expected = extractor.model.get_layer("block2_conv1")(norms).numpy()
    np.testing.assert_allclose(extractor(pixels).style[1].numpy(), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("init", ["gray", "style-mean"])
def test_flat_starts_are_a_colour_and_one_grey_level_of_noise(init, content_image, style_image):
    config = nst.Config(init=init, size=48, seed=1, weights="random", style_blend=(1.0, 3.0), **BLOCK13_LAYERS)
    job = scene.Prepared.of(0, nst.Job(content_image, [style_image, content_image]), config)
    start = job.scenes[0].start(job.config)
    if init == "gray":
        colour = np.full(3, 0.5)
    else:
        styles = job.scenes[0].styles
        colour = 0.25 * styles[0].mean(axis=(0, 1)) + 0.75 * styles[1].mean(axis=(0, 1))
    noise = start - colour
    assert start.shape == job.scenes[0].content.shape
    assert noise.min() >= -1e-6 and noise.max() <= 1 / 255 + 1e-6 and noise.std() > 1e-3


def test_the_scaled_forms_terms_match_numpy_and_do_not_grow_with_the_image():
    rng = np.random.default_rng(5)
    f, p = (rng.uniform(0, 50, (1, 6, 8, 16)).astype(np.float32) for _ in range(2))
    d = (f - p).astype(np.float64)
    content = SCALED.content(tf.constant(f), tf.constant(p)).numpy()[0]
    assert content == pytest.approx(np.sum(d**2) / np.sum(np.abs(d)), rel=1e-5)
    s = rng.uniform(0, 50, (1, 5, 7, 16)).astype(np.float32)
    target = SCALED.style_target(tf.constant(s), 48)
    flat_f, flat_s = f[0].reshape(-1, 16).astype(np.float64), s[0].reshape(-1, 16).astype(np.float64)
    e = flat_f.T @ flat_f / 48 - flat_s.T @ flat_s / 35
    assert SCALED.style(tf.constant(f), target).numpy()[0] == pytest.approx(np.sum(e**2) / np.sum(np.abs(e)), rel=1e-4)

    # Each position repeated 2 x 2 (the same picture at twice the size): the same terms.
    def twice(x):
        return tf.constant(np.repeat(np.repeat(x, 2, axis=1), 2, axis=2))

    assert SCALED.content(twice(f), twice(p)).numpy()[0] == pytest.approx(content, rel=1e-5)
    once = float(SCALED.style(tf.constant(f), target)[0])
    assert SCALED.style(twice(f), target).numpy()[0] == pytest.approx(once, rel=1e-4)


def test_the_mean_total_variation_repeats_the_last_row_and_column():
    x = np.random.default_rng(6).uniform(size=(1, 5, 7, 3))
    padded = np.pad(x, [(0, 0), (0, 1), (0, 1), (0, 0)], mode="edge")
    dy, dx = padded[:, 1:, :-1] - x, padded[:, :-1, 1:] - x
    got = mean_total_variation(tf.constant(x.astype(np.float32))).numpy()[0]
    assert got == pytest.approx(np.mean(dy**2 + dx**2), rel=1e-5)


def test_auto_scales_go_up_by_sqrt_2_from_128_px_with_twice_the_steps_first():
    config = nst.Config(scales="auto", size=512, steps=50)
    assert list(config.schedule) == [(128, 100), (181, 50), (256, 50), (362, 50), (512, 50)]
    assert list(nst.Config(scales="auto", size=100).schedule) == [(100, 500)]
    assert config.replace(size=1024).schedule.sizes[-3:] == (512, 724, 1024)  # 'auto' follows the size
    with pytest.raises(ConfigError, match="scale_steps needs one value per scale"):
        config.replace(scale_steps=(10, 10))


def test_later_scales_go_on_with_adams_moments_resized(block13_weights, content_image, style_image, monkeypatch):
    carried = []
    real = driver.carry_adam

    def carry(engine, moments):
        real(engine, moments)
        carried.append((moments, optimizers.adam_moments(engine)))

    monkeypatch.setattr(driver, "carry_adam", carry)
    nst.stylize(
        content_image,
        style_image,
        weights=str(block13_weights),
        scales=(32, 48),
        steps=3,
        seed=0,
        scale_warm_start=True,
        **BLOCK13_LAYERS,
    )
    (before, after) = carried[-1]
    assert before[0] == after[0] == 3  # Adam's step count goes on
    size = after[1].shape[1:3]
    assert size != before[1].shape[1:3]
    np.testing.assert_allclose(after[1], tf.image.resize(before[1], size, "bicubic").numpy(), atol=1e-7)
    np.testing.assert_allclose(after[2], np.maximum(tf.image.resize(before[2], size, "bilinear").numpy(), 0))
    assert after[2].min() >= 0 and np.abs(after[1]).max() > 0


def test_the_command_line_takes_each_part_of_the_recipe():
    flags = [
        "--scales",
        "auto",
        "--no-scale-warm-start",
        "--ema",
        "0.9",
        "--loss-form",
        "scaled",
        "--style-loss",
        "w2",
        "--padding",
        "replicate",
        "--pooling",
        "l2",
        "--init",
        "style-mean",
    ]
    config = options.config_from(options.build_parser().parse_args(["a.jpg", "b.jpg", "--size", "256", *flags]))
    assert (config.scales, config.schedule.sizes, config.scale_warm_start) == ("auto", (128, 181, 256), False)
    assert (config.ema, config.loss_form, config.style_loss) == (0.9, "scaled", "w2")
    assert (config.padding, config.pooling, config.init) == ("replicate", "l2", "style-mean")
    recipe = options.config_from(options.build_parser().parse_args(["a.jpg", "b.jpg", "--preset", "scale-free"]))
    assert recipe.scale_warm_start and recipe.ema == 0.99 and recipe.scales == "auto"


def test_a_time_limit_ends_the_run_with_its_best_image(block13_weights, content_image, style_image):
    result = nst.stylize(
        content_image,
        style_image,
        weights=str(block13_weights),
        size=48,
        steps=50,
        seed=0,
        time_limit=1e-9,
        **BLOCK13_LAYERS,
    )
    assert result.stopped.startswith("time limit: 1e-09 s of steps at step 0")
    assert len(result.history["total"]) == 1 and result.best_loss == result.history["total"][0]
    with pytest.raises(ConfigError, match="time_limit must be a finite number > 0"):
        nst.Config(time_limit=0).validate()


def test_a_run_that_ends_at_its_time_limit_ends_as_asked(tmp_path, block13_weights):
    if not IMAGES.is_dir():
        pytest.skip("needs the sample images of ../shared")
    out = tmp_path / "timed.png"
    argv = [
        str(IMAGES / "tubingen.jpg"),
        str(IMAGES / "starry_night.jpg"),
        "-o",
        str(out),
        "--size",
        "32",
        "--steps",
        "50",
        "--time-limit",
        "1e-9",
        "--weights",
        str(block13_weights),
        "--quiet",
        "--style-layers",
        *BLOCK13_LAYERS["style_layers"],
        "--content-layers",
        *BLOCK13_LAYERS["content_layers"],
    ]
    assert cli.main(argv) == 0  # not a failure: the end asked for
    assert read_metadata(out)["stopped"].startswith("time limit")
    done = nst.stylize(
        IMAGES / "tubingen.jpg",
        IMAGES / "starry_night.jpg",
        weights=str(block13_weights),
        size=32,
        steps=2,
        time_limit=1e-9,
        scales=(16, 32),
        **BLOCK13_LAYERS,
    )
    assert done.stopped.startswith("time limit") and done.complete and done.best_image.shape[1] == 16
