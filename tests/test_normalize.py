"""The paper's normalised VGG19 (nst.core.normalize): each filter's mean
activation over the statistics images is one, and the network computes the
same maps up to one positive scale per map."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import BLOCK13_LAYERS

import nst.core.normalize
from nst.base.config import ConfigError, preset
from nst.core.features import Extractor, Network
from nst.io.images import ImageError, load_image, save_image
from nst.ui import cli, options

LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block3_conv2")


@pytest.fixture
def stats_folder(tmp_path, content_image, style_image, monkeypatch):
    """Two real images (a photo and a painting where ../shared has them) at
    64 px: small statistics, quickly taken."""
    monkeypatch.setattr(nst.core.normalize, "STATS_SIZE", 64)
    folder = tmp_path / "stats"
    save_image(folder / "a.png", content_image)
    save_image(folder / "b.png", style_image)
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


def _mean_maps(extractor: Extractor, folder) -> list[np.ndarray]:
    """Per-filter means over the folder's images, computed the plain way."""
    maps = [extractor(tf.constant(load_image(path, 64)[None])).style for path in sorted(folder.glob("*.png"))]
    return [
        sum(m[i].numpy().sum((0, 1, 2)) for m in maps) / sum(m[i].shape[1] * m[i].shape[2] for m in maps)
        for i in range(len(maps[0]))
    ]


def test_every_filter_has_mean_one_and_maps_only_change_scale(block13_weights, stats_folder, content_image):
    plain = Extractor(Network(LAYERS, (), str(block13_weights)))
    normalised = Extractor(Network(LAYERS, (), str(block13_weights), normalize=str(stats_folder)))
    assert normalised.normalization["images"] == ["a.png", "b.png"]
    means = _mean_maps(plain, stats_folder)
    scales = [np.maximum(m, nst.core.normalize.RARE * np.median(m)) for m in means]
    for layer, m, scale, n in zip(LAYERS, means, scales, _mean_maps(normalised, stats_folder)):
        common = m >= scale
        assert common.mean() > 0.9, layer  # the rare filters are few
        np.testing.assert_allclose(n[common], 1.0, rtol=1e-4, err_msg=layer)
        np.testing.assert_allclose(n[~common], m[~common] / scale[~common], rtol=1e-4, atol=1e-6, err_msg=layer)
    # On another image, each normalised map is the plain map over its scale.
    image = tf.constant(content_image[None, ::-1, ::-1])
    for layer, scale, a, b in zip(LAYERS, scales, plain(image).style, normalised(image).style):
        np.testing.assert_allclose(
            b.numpy() * scale, a.numpy(), rtol=1e-3, atol=1e-3 * float(a.numpy().max()), err_msg=layer
        )


def test_the_means_are_cached_and_a_damaged_cache_is_recomputed(block13_weights, stats_folder, monkeypatch):
    calls = []
    real = nst.core.normalize.filter_means
    monkeypatch.setattr(nst.core.normalize, "filter_means", lambda *a: calls.append(1) or real(*a))
    first = Extractor(Network(LAYERS, (), str(block13_weights), normalize=str(stats_folder)))
    again = Extractor(Network(LAYERS, (), str(block13_weights), normalize=str(stats_folder)))
    assert len(calls) == 1
    for a, b in zip(first.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for cached in (nst.io.images.cache_dir() / "normalize").glob("*.npz"):
        cached.write_bytes(b"damaged")
    Extractor(Network(LAYERS, (), str(block13_weights), normalize=str(stats_folder)))
    assert len(calls) == 2
    # Another image set is another cache entry.
    save_image(stats_folder / "c.png", np.zeros((40, 40, 3), np.float32))
    Extractor(Network(LAYERS, (), str(block13_weights), normalize=str(stats_folder)))
    assert len(calls) == 3


def test_a_missing_or_empty_folder_is_one_clear_error_before_the_run(tmp_path, capsys, content_image):
    content = save_image(tmp_path / "c.png", content_image)
    (tmp_path / "empty").mkdir()
    for folder, says in [(tmp_path / "nowhere", "no such folder"), (tmp_path / "empty", "no images")]:
        with pytest.raises(ImageError, match=says):
            nst.core.normalize.stats_images(str(folder))
        status = cli.main(
            [
                str(content),
                str(content),
                "-o",
                str(tmp_path / "o.png"),
                "--normalize",
                str(folder),
                "--preset",
                "gatys",
                "--weights",
                "random",
                "--size",
                "32",
                "--steps",
                "1",
                "--quiet",
            ]
        )
        err = capsys.readouterr().err.strip()
        assert status == 2 and says in err and str(folder) in err and len(err.splitlines()) == 1
        assert not (tmp_path / "o.png").exists()


def test_settings_name_the_normalisation():
    assert preset("gatys").normalize == "samples"
    assert preset("report").normalize is None
    assert preset("gatys", normalize="off").normalize is None
    with pytest.raises(ConfigError, match="normalize"):
        preset("report", normalize="")
    args = options.build_parser().parse_args(["a.png", "b.png", "--normalize", "off", "--preset", "gatys"])
    assert options.config_from(args).normalize is None


def test_a_normalised_run_records_its_statistics(stats_folder, tmp_path, content_image, style_image):
    out = tmp_path / "out.png"
    config = preset(
        "gatys",
        size=32,
        steps=2,
        weights="random",
        seed=0,
        normalize=str(stats_folder),
        style_layer_weights=None,
        **BLOCK13_LAYERS,
    )
    result = nst.stylize(content_image, style_image, config=config)
    result.save(out)
    meta = nst.io.images.read_metadata(out)
    assert meta["settings"]["normalize"] == str(stats_folder)
    assert meta["normalization"]["images"] == ["a.png", "b.png"] and meta["normalization"]["size"] == 64
