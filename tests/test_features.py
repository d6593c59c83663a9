"""The VGG19 extractor: same activations as Keras' own VGG19, truncated at
the deepest layer, and every source of weights with its errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from nst.core import features
from nst.core.features import Extractor, Network, WeightsError, get_extractor, resolve_weights

LAYERS = {"style_layers": ("block1_conv1", "block2_conv1"), "content_layers": ("block2_conv2",)}


@pytest.fixture(scope="module")
def random_extractor() -> Extractor:
    with pytest.warns(UserWarning, match="random weights"):
        return Extractor(Network(weights="random", seed=3, **LAYERS))


def _keras_vgg19_like(extractor: Extractor) -> tf.keras.Model:
    """Keras' own VGG19 (MaxPooling2D) with the extractor's weights, giving
    the extractor's layers from preprocessed input."""
    vgg = tf.keras.applications.VGG19(include_top=False, weights=None)
    for layer in extractor.model.layers:
        if layer.weights:
            vgg.get_layer(layer.name).set_weights(layer.get_weights())
    return tf.keras.Model(
        vgg.input, [vgg.get_layer(name).output for name in ("block1_conv1", "block2_conv1", "block2_conv2")]
    )


def test_outputs_equal_keras_vgg19_layers(random_extractor):
    keras_vgg = _keras_vgg19_like(random_extractor)
    # Odd sides: Keras' pooling drops the last row and column, and so must ours.
    images = np.random.default_rng(0).uniform(size=(2, 41, 49, 3)).astype(np.float32)
    expected = keras_vgg(tf.keras.applications.vgg19.preprocess_input(images * 255.0))
    got = random_extractor(tf.constant(images))
    for ours, theirs in zip([*got.style, *got.content], expected):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-4)


def test_gradient_equals_keras_max_pooling_gradient(random_extractor):
    # The pooling's gradient is written differently from MaxPooling2D's (a
    # reduction, not select-and-scatter); through ReLUs it is the same.
    keras_vgg = _keras_vgg19_like(random_extractor)
    rng = np.random.default_rng(4)
    images = tf.constant(rng.uniform(size=(1, 37, 44, 3)).astype(np.float32))
    probes = [tf.constant(rng.normal(size=f.shape).astype(np.float32)) for f in keras_vgg(images * 255.0)]

    def gradient(features):
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = sum(tf.reduce_sum(p * f) for p, f in zip(probes, features(images)))
        return tape.gradient(loss, images).numpy()

    ours = gradient(lambda x: [*(f := random_extractor(x)).style, *f.content])
    theirs = gradient(lambda x: keras_vgg(tf.keras.applications.vgg19.preprocess_input(x * 255.0)))
    assert np.abs(theirs).max() > 1.0  # a gradient worth comparing
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_network_stops_at_deepest_layer(random_extractor):
    names = [layer.name for layer in random_extractor.model.layers]
    assert names[-1] == "block2_conv2"
    assert not any(n.startswith(("block3", "block4", "block5")) for n in names)


def test_average_pooling_keeps_the_weights_and_averages(random_extractor):
    with pytest.warns(UserWarning, match="random weights"):
        avg = Extractor(Network(weights="random", seed=3, pooling="avg", **LAYERS))
    assert {layer.mode for layer in avg.model.layers if isinstance(layer, features.Pool2x2)} == {"avg"}
    images = tf.constant(np.random.default_rng(1).uniform(size=(1, 32, 40, 3)).astype(np.float32))
    got, reference = avg(images), random_extractor(images)
    np.testing.assert_allclose(got.style[0], reference.style[0], rtol=1e-6)  # before any pooling: equal
    # block2_conv1 sees the 2x2 means of block1_conv2, through the same kernel.
    layer = random_extractor.model.get_layer
    x = tf.keras.applications.vgg19.preprocess_input(images * 255.0)
    b1 = layer("block1_conv2")(layer("block1_conv1")(x)).numpy()
    means = b1.reshape(1, 16, 2, 20, 2, -1).mean(axis=(2, 4))
    expected = layer("block2_conv1")(means)
    np.testing.assert_allclose(got.style[1], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(got.style[1], reference.style[1], atol=1e-3)


def test_grey_input_is_read_as_three_equal_channels(random_extractor):
    grey = np.random.default_rng(2).uniform(size=(1, 16, 16, 1)).astype(np.float32)
    one, three = random_extractor(tf.constant(grey)), random_extractor(tf.constant(np.repeat(grey, 3, -1)))
    np.testing.assert_allclose(one.style[1], three.style[1], rtol=1e-6)


def test_random_weights_are_seeded():
    a = Extractor(Network(("block1_conv1",), (), weights="random", seed=1))
    b = Extractor(Network(("block1_conv1",), (), weights="random", seed=1))
    c = Extractor(Network(("block1_conv1",), (), weights="random", seed=2))
    wa, wb, wc = (e.model.get_layer("block1_conv1").get_weights()[0] for e in (a, b, c))
    np.testing.assert_array_equal(wa, wb)
    assert not np.allclose(wa, wc)


def test_extractor_is_built_once_per_process():
    a = get_extractor(Network(("block1_conv1",), (), "random", 5))
    assert get_extractor(Network(("block1_conv1",), (), "random", 5)) is a
    assert get_extractor(Network(("block1_conv1",), (), "random", 6)) is not a


@pytest.mark.real_weights
def test_npz_weights_are_loaded_by_layer_name(block13_weights):
    extractor = get_extractor(Network(("block1_conv1", "block3_conv1"), ("block3_conv2",), str(block13_weights)))
    arrays = np.load(block13_weights)
    for name in ("block1_conv1", "block2_conv2", "block3_conv2"):
        kernel, bias = extractor.model.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, arrays[f"{name}/kernel"])
        np.testing.assert_array_equal(bias, arrays[f"{name}/bias"])


def test_npz_missing_a_needed_layer_names_it(tmp_path, random_extractor):
    partial = tmp_path / "partial.npz"
    arrays = {}
    for name in ("block1_conv1", "block1_conv2"):
        kernel, bias = random_extractor.model.get_layer(name).get_weights()
        arrays[f"{name}/kernel"], arrays[f"{name}/bias"] = kernel, bias
    np.savez(partial, **arrays)
    Extractor(Network(("block1_conv2",), (), weights=str(partial)))  # covered: fine
    with pytest.raises(WeightsError, match=r"no weights for layer block2_conv1.*block1_conv1, block1_conv2"):
        Extractor(Network(("block1_conv1",), ("block2_conv2",), weights=str(partial)))


def test_imagenet_download_failure_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tf.keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.applications.vgg19.file_utils.get_file", offline)
    with pytest.raises(WeightsError) as err:
        Extractor(Network(("block1_conv1",), (), weights="imagenet"))
    message = str(err.value)
    assert "Could not download" in message and "name resolution" in message
    assert "NST_VGG19_WEIGHTS" in message and "random" in message and "notop.h5" in message
    assert "nst weights install PATH" in message


def test_weights_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(features.WEIGHTS_ENV, raising=False)
    assert resolve_weights(None) == "imagenet"
    assert resolve_weights("None") == "random"
    good = tmp_path / "w.npz"
    good.write_bytes(b"x")
    monkeypatch.setenv(features.WEIGHTS_ENV, str(good))
    assert resolve_weights(None) == str(good)
    assert resolve_weights("imagenet") == "imagenet"
    with pytest.raises(WeightsError, match="no such weights file"):
        resolve_weights(tmp_path / "missing.h5")
    monkeypatch.delenv(features.WEIGHTS_ENV)
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))
    linked = tmp_path / "linked.npz"
    installed = tmp_path / "cache" / "weights" / "linked.npz"
    installed.parent.mkdir(parents=True)
    installed.symlink_to(linked)  # an installed link whose file has gone
    with pytest.raises(WeightsError, match=r"linked\.npz \(the file `nst weights install --link` linked to is gone"):
        resolve_weights(None)
    bad = tmp_path / "w.pkl"
    bad.write_bytes(b"x")
    with pytest.raises(WeightsError, match=r"\.h5 or \.npz"):
        resolve_weights(bad)


def test_corrupt_weight_files_are_clear_errors(tmp_path):
    for name in ("bad.npz", "bad.h5"):
        (tmp_path / name).write_bytes(b"not weights")
        with pytest.raises(WeightsError, match=name):
            Extractor(Network(("block1_conv1",), (), weights=str(tmp_path / name)))


def test_h5_weights_round_trip(tmp_path, random_extractor):
    vgg = tf.keras.applications.VGG19(include_top=False, weights=None)
    for layer in random_extractor.model.layers:
        if layer.weights:
            vgg.get_layer(layer.name).set_weights(layer.get_weights())
    path = tmp_path / "vgg19.weights.h5"
    vgg.save_weights(path)
    loaded = Extractor(Network(**LAYERS, weights=str(path)))
    images = tf.random.stateless_uniform((1, 16, 16, 3), seed=(1, 2))
    np.testing.assert_allclose(loaded(images).content[0], random_extractor(images).content[0], rtol=1e-6)
