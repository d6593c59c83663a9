"""Device choice: what the machine has (the CPU here, a GPU where there is
one), clear errors for a missing GPU/TPU, and the engine's strategy path
(scope + strategy.run) exercised on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY

import nst
from nst.core import device, scene

#: What this machine has (a TPU is not looked for: the suite runs on CPUs and GPUs).
HAS_GPU = bool(tf.config.list_logical_devices("GPU"))


def test_this_machine_runs_on_what_it_has(monkeypatch):
    """The first GPU through OneDeviceStrategy where there is one, else the
    CPU with the default strategy."""
    monkeypatch.delenv("NST_DEVICE", raising=False)
    chosen = device.current()
    if HAS_GPU:
        assert chosen.kind == "GPU" and isinstance(chosen.strategy, tf.distribute.OneDeviceStrategy)
    else:
        assert chosen.kind == "CPU" and chosen.strategy is tf.distribute.get_strategy()
    assert device.current() is chosen and str(chosen).startswith(f"{chosen.kind}: ")
    assert device.current("cpu").kind == "CPU"  # always there, and asked for by name


@pytest.mark.parametrize("kind, hint", [("gpu", "Change runtime type > GPU"), ("tpu", "Change runtime type > TPU")])
def test_asking_for_a_missing_accelerator_says_how_to_get_one(kind, hint):
    if kind == "gpu" and HAS_GPU:
        assert device.current(kind).kind == "GPU"  # not missing here
    else:
        with pytest.raises(RuntimeError, match=hint):
            device.current(kind)
    with pytest.raises(ValueError, match="choose one of: auto, tpu, gpu, cpu"):
        device.current("fpga")


def test_the_strategy_path_gives_the_same_run(content_image, style_image, monkeypatch):
    """A OneDeviceStrategy (what a GPU gets), on the CPU: same losses and image
    as the default strategy, and the result says where it ran."""
    plain = nst.stylize(content_image, style_image, **TINY)
    # Labelled CPU: a "GPU" with a seed would turn on op determinism for the whole test process.
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    one = device.Device("CPU", "OneDeviceStrategy(/cpu:0)", strategy, strategy)
    monkeypatch.setattr(scene, "current_device", lambda kind: one)
    placed = nst.stylize(content_image, style_image, **TINY)
    np.testing.assert_allclose(placed.history["total"], plain.history["total"], rtol=1e-5)
    np.testing.assert_allclose(placed.best_image, plain.best_image, atol=1e-5)
    assert placed.device == "CPU: OneDeviceStrategy(/cpu:0)" and plain.device.startswith("CPU: ")
    lbfgs = nst.stylize(content_image, style_image, **TINY, optimizer="lbfgs")
    assert min(lbfgs.history["total"]) < lbfgs.history["total"][0]
