"""Tiled evaluation (nst.core.tiles): the objective and its gradient computed a
tile at a time equal the untiled ones, on real weights, for tiles that do
and do not divide the image."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

import nst
from nst.base.backend import tf
from nst.base.config import ConfigError, preset
from nst.core import tiles
from nst.core.features import extractor_for
from nst.core.losses import Weights
from nst.core.problem import Problem
from nst.core.scene import Scene
from nst.core.targets import targets_for
from nst.run.resources import auto_tile, check_memory, estimate_bytes
from nst.ui import cli

EIGHTBIT = SHARED / "weights" / "vgg19_imagenet_8bit.npz"


@given(
    height=st.integers(16, 420),
    width=st.integers(16, 420),
    tile=st.integers(32, 200),
    name=st.sampled_from(["report", "blocks1-3"]),
)
def test_tiles_partition_the_image_on_the_pooling_grid(height, width, tile, name):
    config = preset(name, tile=tile)
    grid, halo, margins = config.min_side, config.tile_halo, config.tile_margins
    assert all(m % 2 == 0 for m in margins[1:])  # kept before a pooling: its windows fall where they do untiled
    owner = np.zeros((height, width), int)
    for t in tiles.layout(height, width, config):
        top, bottom, left, right = t.core
        owner[top:bottom, left:right] += 1
        in_top, in_bottom, in_left, in_right = t.input
        assert (in_top, in_left) == (max(0, top - halo), max(0, left - halo))
        assert (in_bottom, in_right) == (min(height, bottom + halo), min(width, right + halo))
        for edge, end in [(top, height), (bottom, height), (left, width), (right, width)]:
            assert edge % grid == 0 or edge == end  # on the deepest pooling's grid, or the image's edge
        for side, (edge, core) in enumerate(zip(t.input, t.core)):  # trimmed where the whole halo is there
            assert t.trimmed[side] == (abs(core - edge) == halo)
            assert t.trimmed[side] or edge in (0, height if side < 2 else width)
        for block in range(1, len(margins) + 1):  # the blocks of the layers used
            stride = 2 ** (block - 1)
            margin = margins[0] if block == 1 else margins[block - 1] // 2
            r0, r1, c0, c1 = t.bounds(stride, margin)
            rows, cols = t.feature_slice(stride, margin)
            assert r1 - r0 == bottom // stride - top // stride and c1 - c0 == right // stride - left // stride
            assert 0 <= r0 <= r1 <= rows.stop - rows.start and 0 <= c0 <= c1 <= cols.stop - cols.start
            # what the map covers: the input's rows at this stride, less what was trimmed
            assert rows.start * stride >= in_top and cols.start * stride >= in_left
            assert rows.stop <= in_bottom // stride + 1 and cols.stop <= in_right // stride + 1
    assert (owner == 1).all()  # every pixel owned by one tile


def test_the_halo_is_the_receptive_field_of_the_deepest_layer():
    """`Config.tile_halo`, worked out by walking the layers, is where the
    gradient of one block5_conv1 feature with respect to the pixels ends
    (real weights): 70 px beyond the 16 x 16 px it sits on, on every side."""
    if not EIGHTBIT.is_file():
        pytest.skip(f"8-bit VGG19 weights not found at {EIGHTBIT}")
    config = preset("report", weights=str(EIGHTBIT))
    extractor = extractor_for(config)
    image = tf.constant(np.random.default_rng(0).uniform(0, 1, (1, 288, 288, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(image)
        deepest = extractor(image).style[-1]  # block5_conv1, 18 x 18 positions of 16 px
        feature = tf.reduce_sum(deepest[0, 8, 9])  # its pixels: rows 128..143, columns 144..159
    reach = np.abs(tape.gradient(feature, image).numpy()[0]).sum(axis=-1) > 0
    rows, cols = np.flatnonzero(reach.any(axis=1)), np.flatnonzero(reach.any(axis=0))
    halo = config.tile_halo
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (128 - halo, 143 + halo, 144 - halo, 159 + halo)


def tile_problems(
    weights,
    name: str,
    size: int,
    tile: int,
    styles: int = 1,
    regions: bool = False,
    temporal: bool = False,
    target_rtol: float = 1e-5,
    **settings,
):
    """The untiled and the tiled problem on the same noise start, their
    targets equal to ``target_rtol`` of the largest value; with
    ``regions``, each style on a band of the image (`nst.io.regions`, soft
    masks) and the second taking its style from part of its painting; with
    ``temporal``, a video frame's temporal term (`nst.modes.video`) towards other
    noise, trusted on part of the image."""
    # Compiled with XLA, as the runs that nothing was measured for are (`nst.core.execution`).
    config = preset(name, size=size, weights=str(weights), tile=tile, **{"jit_compile": True, **settings})
    extractor = extractor_for(config)
    images = SHARED / "images"
    paintings = [images / "starry_night.jpg", images / "the_scream.jpg"][:styles]
    if not images.is_dir():
        pytest.skip("needs the sample images of ../shared")
    scene = Scene.load(images / "tubingen.jpg", paintings, config, size)
    start = np.random.default_rng(0).uniform(0, 1, (1, *scene.content.shape)).astype(np.float32)
    blend = tuple(np.linspace(1, 2, styles) / np.linspace(1, 2, styles).sum())
    if regions:
        h, w = scene.content.shape[:2]
        x = np.linspace(0, 1, w)[None, :].repeat(h, 0)
        bands = np.stack([np.clip(1.5 - 3 * x, 0, 1), np.clip(3 * x - 1.5, 0, 1)]).astype(np.float32)
        style_mask = np.zeros(scene.styles[1].shape[:2], np.float32)
        style_mask[: len(style_mask) // 2] = 1  # the top of the second painting
        scene = dataclasses.replace(scene, regions=bands, style_regions=(None, style_mask))
    if temporal:
        rng = np.random.default_rng(1)
        trusted = (rng.uniform(size=(*scene.content.shape[:2], 1)) > 0.3).astype(np.float32)
        previous = (rng.uniform(size=scene.content.shape).astype(np.float32), trusted, 30.0)
        scene = dataclasses.replace(scene, previous=previous)
    targets = targets_for(extractor, scene, blend, config.replace(tile=None))
    tiled_targets = targets_for(extractor, scene, blend, config)
    for a, b in zip(tf.nest.flatten(targets), tf.nest.flatten(tiled_targets)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=target_rtol * float(np.abs(a.numpy()).max()))
    strategy, weights = tf.distribute.get_strategy(), Weights.of([config])
    untiled = Problem(start, extractor, targets, weights, config.replace(tile=None), strategy)
    tiled = tiles.TiledProblem(start, extractor, tiled_targets, weights, config, strategy)
    return untiled, tiled


def assert_tiled_equals_untiled(untiled, tiled, gradient_rtol: float = 1e-5) -> None:
    # Both as a run computes them (XLA-compiled). XLA and TensorFlow's own
    # kernels differ by rounding, which at the paper's layers flips a ReLU or a
    # pooling somewhere and moves one pixel's gradient by 5e-3 (measured,
    # untiled against untiled): like must be compared with like.
    values, gradient = (t.numpy() for t in untiled.compiled(untiled.evaluate_with_gradient)())
    tiled_values, tiled_gradient = (t.numpy() for t in tiled.compiled(tiled.evaluate_with_gradient)())
    assert tiled.names == untiled.names
    # Measured (2026-12-04, every caller): terms within 1.3e-6, the gradient
    # within 8.6e-7 of its largest value; held to about ten times that.
    np.testing.assert_allclose(tiled_values, values, rtol=1e-5)
    assert np.abs(tiled_gradient - gradient).max() <= gradient_rtol * np.abs(gradient).max()


@pytest.mark.parametrize("size, tile", [(227, 64), (256, 64)])  # 227 x 170: no tile divides it; 256 x 192: 64 does
def test_tiled_objective_and_gradient_equal_the_untiled_with_the_papers_layers(size, tile):
    """From noise (near the content, the content term's F - P is a small
    difference of large numbers, and float rounding alone moves it by 1e-3)."""
    if not EIGHTBIT.is_file():
        pytest.skip(f"8-bit VGG19 weights not found at {EIGHTBIT}")
    untiled, tiled = tile_problems(EIGHTBIT, "report", size, tile)
    assert any(t.input != (0, untiled.image.shape[1], 0, untiled.image.shape[2]) for t in tiled.tiles)
    assert_tiled_equals_untiled(untiled, tiled)


def test_many_small_tiles_on_the_exact_block_1_3_weights_with_two_styles(block13_weights):
    untiled, tiled = tile_problems(block13_weights, "blocks1-3", 131, 32, styles=2)
    assert len(tiled.tiles) == 20  # 131 x 98: 5 x 4 cores of 32 px and less
    assert_tiled_equals_untiled(untiled, tiled)


def test_an_image_inside_one_tile_takes_one_pass(block13_weights):
    untiled, tiled = tile_problems(block13_weights, "blocks1-3", 64, 64)  # 64 x 48: the tile's pass 1 goes on to pass 3
    assert len(tiled.tiles) == 1 and tiled.last is tiled.tiles[0]
    assert_tiled_equals_untiled(untiled, tiled)


def test_regions_tile_exactly_too(block13_weights):
    untiled, tiled = tile_problems(block13_weights, "blocks1-3", 99, 32, styles=2, regions=True)  # 99 x 74
    assert len(untiled.targets.masks) == 3
    assert_tiled_equals_untiled(untiled, tiled)


def test_a_video_frames_temporal_term_tiles_too(block13_weights):
    untiled, tiled = tile_problems(block13_weights, "blocks1-3", 99, 32, temporal=True)
    assert_tiled_equals_untiled(untiled, tiled)
    assert untiled.names[-1] == "temporal" and len(tiled.targets.temporal) == 3


@pytest.mark.parametrize("form", ["report", "tutorial", "gatys", "scaled"])
def test_every_loss_form_tiles_exactly_with_and_without_regions(block13_weights, form):
    """Each form's style term is a function of G, a sum over tiles, and its
    content term is linear in a sum over positions: tiled equals untiled."""
    for regions in (False, True):
        untiled, tiled = tile_problems(block13_weights, "blocks1-3", 64, 32, styles=2, regions=regions, loss_form=form)
        assert bool(untiled.targets.masks) == regions
        assert_tiled_equals_untiled(untiled, tiled)


def test_tiled_float16_agrees_with_float32_as_untiled_float16_does(block13_weights, content_image, style_image):
    """The tiled gradient carries Adam's loss scale, as the untiled one does:
    without it float16's Adam would move by the scale's inverse."""
    config = preset("blocks1-3", weights=str(block13_weights), size=64, steps=4)
    runs = {
        (precision, tile): nst.stylize(content_image, style_image, config=config, precision=precision, tile=tile)
        for precision in ("float32", "mixed_float16")
        for tile in (None, 32)
    }
    reference = np.array(runs["float32", None].history["total"])
    error = {key: np.abs(np.array(r.history["total"]) / reference - 1).max() for key, r in runs.items()}
    assert error["float32", 32] < 1e-4
    assert 0 < error["mixed_float16", None] < 0.05
    assert error["mixed_float16", 32] <= 2 * error["mixed_float16", None]
    assert runs["mixed_float16", 32].history["total"][-1] < 0.9 * reference[0]  # it moved as far as float32 does


def test_a_tiled_cli_run_gives_the_untiled_png(tmp_path):
    """The issue's check: report preset, 8-bit weights, 192 px, 8 Adam steps, 64 px tiles."""
    if not EIGHTBIT.is_file():
        pytest.skip(f"8-bit VGG19 weights not found at {EIGHTBIT}")
    common = ["--demo", "--weights", str(EIGHTBIT), "--size", "192", "--steps", "8", "--seed", "0", "--quiet"]
    assert cli.main([*common, "-o", str(tmp_path / "untiled.png")]) == 0
    assert cli.main([*common, "-o", str(tmp_path / "tiled.png"), "--tile", "64"]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=int) for n in ("untiled", "tiled"))
    assert np.abs(a - b).max() <= 1  # what the README says (measured: 1)
    assert nst.io.images.read_metadata(tmp_path / "tiled.png")["settings"]["tile"] == 64


def test_lbfgs_coarse_to_fine_and_colour_run_tiled(block13_weights, content_image, style_image):
    config = preset(
        "blocks1-3",
        weights=str(block13_weights),
        optimizer="lbfgs",
        scales=(48, 96),
        steps=4,
        preserve_color="luminance",
        seed=0,
    )
    untiled = nst.stylize(content_image, style_image, config=config)
    tiled = nst.stylize(content_image, style_image, config=config.replace(tile=32))
    np.testing.assert_allclose(tiled.history["total"], untiled.history["total"], rtol=1e-3)  # measured 1.6e-4
    assert np.abs(tiled.best_image - untiled.best_image).max() <= 1 / 255  # measured 0.08 / 255


def test_settings_a_tile_does_not_go_with(capsys):
    with pytest.raises(SystemExit):
        cli.main(["sample:tubingen", "sample:starry_night", "--tile", "big"])
    assert "'big' is not a size: give pixels (e.g. 256) or 'auto'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="tile must be from 32"):
        preset("report", tile=16)


def test_memory_follows_the_tile_and_the_advice_says_tile():
    config = preset("report")
    untiled, tiled = estimate_bytes(config, 1536, 2048), estimate_bytes(config.replace(tile=256), 1536, 2048)
    assert tiled < untiled / 4
    assert auto_tile(config, 384, 512, available=untiled) is None  # fits as it is
    assert auto_tile(config, 1536, 2048, available=untiled // 2) == 512
    with pytest.raises(ConfigError, match="use tile=512"):
        check_memory(config, 1536, 2048, available=untiled // 2)


def test_a_tiled_run_is_interrupted_like_any(block13_weights, content_image, style_image):
    """Ctrl-C in a callback: the best image so far comes back, as untiled."""

    def stop(progress):
        if progress.step == 2:
            raise KeyboardInterrupt

    config = preset("blocks1-3", weights=str(block13_weights), size=64, steps=10, tile=32)
    result = nst.stylize(content_image, style_image, config=config, callback=stop)
    assert result.stopped == "interrupted" and result.history["step"][-1] == 2
    assert result.best_image.shape == (48, 64, 3)


def test_content_only_and_style_only_runs_tile_too(block13_weights, content_image, style_image):
    for layers in [
        {"style_layers": (), "content_layers": ("block3_conv2",)},
        {"style_layers": ("block2_conv1",), "content_layers": ()},
    ]:
        config = preset("blocks1-3", weights=str(block13_weights), size=64, steps=3, init="noise", seed=0, **layers)
        untiled = nst.stylize(content_image, style_image, config=config)
        tiled = nst.stylize(content_image, style_image, config=config.replace(tile=32))
        np.testing.assert_allclose(tiled.history["total"], untiled.history["total"], rtol=1e-4)


SPREAD = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {tests!r})
from conftest import BLOCK13_WEIGHTS
import nst
settings = dict(preset="blocks1-3", weights=str(BLOCK13_WEIGHTS), size=96, steps=3, init="noise", seed=0)
content, style = {content!r}, {style!r}
tiled = nst.stylize(content, style, **settings, tile=32)  # 9 tiles of 6 shapes: groups of 2 and of 1
untiled = nst.stylize(content, style, **settings)
print(json.dumps({{"device": tiled.device, "tiled": tiled.history["total"], "untiled": untiled.history["total"],
                   "image": float(np.abs(tiled.best_image - untiled.best_image).max())}}))
"""


def test_tiles_spread_over_the_devices_with_the_result_of_one(block13_weights):
    """Two logical CPU devices (as two GPUs would be): each replica takes a
    tile of a group of one shape at once; objective and image are those of
    an untiled run on one device."""
    images = SHARED / "images"
    if not images.is_dir():
        pytest.skip("needs the sample images of ../shared")
    code = textwrap.dedent(
        SPREAD.format(
            tests=str(Path(__file__).resolve().parent),
            content=str(images / "tubingen.jpg"),
            style=str(images / "starry_night.jpg"),
        )
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["device"].endswith("2 replicas")
    np.testing.assert_allclose(out["tiled"], out["untiled"], rtol=1e-4)
    assert out["image"] <= 1e-3


def test_save_every_and_resume_run_tiled(tmp_path, block13_weights, content_image, style_image):
    """Frames are written during a tiled run, and `--resume` goes on tiled
    (the tile is a recorded setting) from where it stopped, with Adam warm."""
    photo, painting = tmp_path / "photo.png", tmp_path / "painting.png"
    for path, image in ((photo, content_image), (painting, style_image)):
        Image.fromarray((image * 255).astype(np.uint8)).save(path)
    out = tmp_path / "out.png"
    common = ["--preset", "blocks1-3", "--weights", str(block13_weights), "--size", "64", "--quiet"]
    assert (
        cli.main(
            [str(photo), str(painting), *common, "--steps", "4", "--tile", "32", "--save-every", "2", "-o", str(out)]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.glob("out-*.png")) == ["out-00000.png", "out-00002.png", "out-00004.png"]
    first = nst.io.images.read_metadata(out)
    assert first["settings"]["tile"] == 32 and first["steps_done"] == 4 and first["adam"]
    assert cli.main(["--resume", str(out), "--steps", "3", "--quiet"]) == 0
    again = nst.io.images.read_metadata(out)
    assert again["settings"]["tile"] == 32 and again["steps_done"] == 3
    assert again["start_loss"] == pytest.approx(first["best_loss"], rel=0.05)  # from where it was, not afresh
