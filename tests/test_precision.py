"""Mixed precision: VGG19 in 16 bits with Gram matrices and losses in float32
agrees with float32 (checked on the CPU at a tiny size, real weights), and
'auto' tries 16 bits only where the device computes them natively (float16
on a GPU with Adam, bfloat16 on a TPU or a CPU with AVX512_BF16 or AMX),
keeping them only where the measurement finds them faster and agreeing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import BLOCK13_LAYERS

import nst
from nst.core import execution
from nst.core.device import Device
from nst.core.features import extractor_for
from nst.io.images import load_image


@pytest.fixture(scope="module")
def float32_run(block13_weights, content_image, style_image) -> nst.Result:
    return nst.stylize(content_image, style_image, **settings(block13_weights), precision="float32")


def settings(weights) -> dict:
    return {"size": 48, "steps": 20, "weights": str(weights), "style_weight": 1e4, **BLOCK13_LAYERS}


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_agrees_with_float32(precision, float32_run, block13_weights, content_image, style_image):
    run = nst.stylize(content_image, style_image, **settings(block13_weights), precision=precision)
    assert run.config.precision == precision
    # The features are computed in 16 bits but reach the losses as float32.
    extractor = extractor_for(run.config)
    assert extractor.model.layers[1].compute_dtype == precision.removeprefix("mixed_")
    assert extractor.model.layers[1].kernel.dtype == "float32"
    assert all(f.dtype == tf.float32 for f in extractor(tf.zeros([1, 32, 32, 3])).style)
    # 16-bit features (bfloat16 keeps 8 bits of mantissa, float16 11, with
    # loss scaling) give the objective at the start to within 1% and after
    # 20 steps to within 3% (measured: 0.4% and 0.7% / 1.6%).
    start, ref = run.history["total"][0], float32_run.history["total"][0]
    assert abs(start / ref - 1) < 0.01
    assert abs(run.best_loss / float32_run.best_loss - 1) < 0.03
    assert run.best_loss < 0.5 * start  # it optimises
    # Adam's normalised steps follow the gradient's signs, which rounding
    # perturbs: the images agree to well within what the run changed.
    moved = np.abs(float32_run.best_image - load_image(content_image, 48)).mean()
    assert np.abs(run.best_image - float32_run.best_image).mean() < 0.3 * moved


def test_auto_precision_tries_16_bits_where_the_device_has_them(monkeypatch):
    strategy = tf.distribute.get_strategy()
    monkeypatch.setattr(execution, "cpu", lambda: ("a CPU without bfloat16", ("avx2",)))
    devices = {kind: Device(kind, "", strategy, strategy) for kind in ("CPU", "GPU", "TPU")}
    picks = {kind: execution.sixteen_bit(nst.Config(), device) for kind, device in devices.items()}
    assert picks == {"CPU": None, "GPU": "mixed_float16", "TPU": "mixed_bfloat16"}
    assert execution.sixteen_bit(nst.Config(optimizer="lbfgs"), Device("GPU", "", strategy, strategy)) is None
    with pytest.raises(nst.ConfigError, match="precision"):
        nst.Config(precision="float8").validate()
