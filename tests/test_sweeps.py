"""Sweeps: several runs optimised as one batch give the images of separate
runs, are grouped by what they can share, and spread over replicas
(MirroredStrategy over two logical CPU devices, in a fresh process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY

import nst
from nst.core import engine
from nst.io.images import ImageError

#: Runs that differ in every setting a batch lets differ.
VARIED = [
    {},
    {"style_weight": 1e2, "content_weight": 3.0},
    {"tv_weight": 5.0, "style_layer_weights": (0.5, 0.3, 0.2)},
    {"init": "noise"},  # with the seed of TINY (a seed also picks random weights)
]
SETTINGS = {**TINY, "steps": 6, "learning_rate": 0.05}


def test_grid_is_every_combination_in_order():
    a, b, style = "sample:tubingen", "sample:the_scream", "sample:starry_night"
    jobs = nst.grid([a, b], [style], style_weight=[1, 2], tv_weight=[0, 3])
    assert [(j.content, j.style, dict(j.settings)) for j in jobs][:3] == [
        (a, style, {"style_weight": 1, "tv_weight": 0}),
        (a, style, {"style_weight": 1, "tv_weight": 3}),
        (a, style, {"style_weight": 2, "tv_weight": 0}),
    ]
    assert len(jobs) == 8 and jobs[4].content == b


def test_a_missing_file_is_refused_when_the_job_is_made(tmp_path):
    with pytest.raises(ImageError, match=r"missing\.jpg: no such file"):
        nst.grid(["sample:tubingen"], [["sample:starry_night", str(tmp_path / "missing.jpg")]], style_weight=[1, 2])
    with pytest.raises(ImageError, match="is a folder"):
        nst.Job(tmp_path, "sample:starry_night")


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """The batch size of every problem the engine sets up."""
    sizes: list[int] = []
    real = engine.acquire

    def spy(config, strategy, start, *args, **kwargs):
        sizes.append(len(start))
        return real(config, strategy, start, *args, **kwargs)

    monkeypatch.setattr(engine, "acquire", spy)
    return sizes


def test_a_batch_gives_the_images_of_separate_runs(content_image, style_image, batch_sizes):
    jobs = [nst.Job(content_image, style_image, settings) for settings in VARIED]
    seen = []
    batched = nst.stylize_many(jobs, callback=lambda p: seen.append((p.job, p.step)), **SETTINGS)
    assert batch_sizes == [len(VARIED)]  # one batch
    assert sorted(seen) == [(j, k) for j in range(len(VARIED)) for k in range(7)]
    for settings, result in zip(VARIED, batched):
        alone = nst.stylize(content_image, style_image, **{**SETTINGS, **settings})
        np.testing.assert_allclose(result.history["total"], alone.history["total"], rtol=1e-4)
        for image, other in ((result.best_image, alone.best_image), (result.image, alone.image)):
            # The objective is smooth (TV too: squared differences), so the
            # batch's rounding differences stay rounding-sized.
            assert np.abs(image - other).max() < 2e-5
        assert result.best_step == alone.best_step and result.config == alone.config
    # The runs really differ: each got its own settings.
    assert len({round(r.history["total"][0], 3) for r in batched}) == len(VARIED)


def test_jobs_that_cannot_share_a_batch_run_apart(content_image, style_image, batch_sizes):
    tall = content_image.transpose(1, 0, 2)  # another shape
    jobs = [
        nst.Job(content_image, style_image),
        nst.Job(tall, style_image),
        nst.Job(content_image, style_image, {"learning_rate": 0.01}),  # a shared setting differs
        nst.Job(content_image, style_image, {"style_weight": 10.0}),  # batched with the first
        nst.Job(content_image, style_image, {"optimizer": "lbfgs"}),  # line searches: alone
    ]
    results = nst.stylize_many(jobs, **SETTINGS)
    assert batch_sizes == [2, 1, 1, 1]
    assert results[1].image.shape == (32, 24, 3) and results[0].image.shape == (24, 32, 3)
    assert results[3].config.style_weight == 10.0 and results[4].config.optimizer == "lbfgs"
    assert all(r.best_loss < r.history["total"][0] for r in results)


MIRRORED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {tests!r})
from conftest import TINY
import nst
from nst.io.images import load_image
settings = {{**TINY, "steps": 5, "learning_rate": 0.05}}
content, style = load_image("sample:tubingen", 32), load_image("sample:starry_night", 32)
varied = [{{}}, {{"style_weight": 1e2}}, {{"init": "noise"}}]  # 3 on 2 replicas: one padded
spread = nst.stylize_many([nst.Job(content, style, s) for s in varied], **settings)
alone = [nst.stylize(content, style, **settings, **s) for s in varied]
print(json.dumps({{
    "replicas": nst.core.device.current().spread.num_replicas_in_sync,
    "device": spread[0].device,
    "image": [float(np.abs(a.best_image - b.best_image).max()) for a, b in zip(spread, alone)],
    "mean": [float(np.abs(a.best_image - b.best_image).mean()) for a, b in zip(spread, alone)],
    "loss": [float(np.max(np.abs(np.array(a.history["total"]) / b.history["total"] - 1)))
             for a, b in zip(spread, alone)],
}}))
"""


def test_a_batch_spreads_over_two_replicas_with_the_same_images(tmp_path):
    """MirroredStrategy over two logical CPU devices: each replica optimises
    its share of the batch, and the images are those of separate runs."""
    tests = str(Path(__file__).resolve().parent)
    code = textwrap.dedent(MIRRORED.format(tests=tests))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2 and out["device"].endswith("2 replicas")
    # Equal up to rounding: the replicas' XLA clusters round differently, and
    # Adam's normalised step amplifies that where a gradient is near zero.
    assert max(out["loss"]) < 1e-4 and max(out["mean"]) < 1e-5 and max(out["image"]) < 5e-3
