"""The measured path (`nst.core.execution`): which candidates, which wins, what is
remembered, and that a measured run is the same run as one told its path.

The choice is tested on a fake clock (probes that cost what the test says),
so nothing here depends on this machine's speed; the real run below forces a
measurement at a tiny size and checks what it records, not which path won.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import TINY

import nst
from nst.base.backend import tf
from nst.core import execution
from nst.core.device import Device
from nst.io.images import read_metadata
from nst.ui import options

STRATEGY = tf.distribute.get_strategy()
CPU = Device("CPU", "a test stand-in", STRATEGY, STRATEGY)
GPU = Device("GPU", "a test stand-in", STRATEGY, STRATEGY)
SHAPE = (1, 512, 512, 3)


class Clock:
    """A perf_counter that moves only when a fake probe steps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeProbe:
    """Duck-types `nst.core.execution.Probe`: each step costs ``first``
    seconds the first time, ``step`` after, on the clock, and reports an
    objective ``scale`` times a falling reference."""

    def __init__(self, clock: Clock, first: float, step: float, scale: float = 1.0) -> None:
        self.clock, self.first, self.cost, self.scale = clock, first, step, scale
        self.k, self.held = 0, True

    def advance(self) -> float:
        self.clock.now += self.first if self.k == 0 else self.cost
        self.k += 1
        return self.scale * 100.0 / self.k

    def release(self) -> None:
        self.held = False


@pytest.fixture
def clock(monkeypatch, tmp_path):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    monkeypatch.setattr(execution, "cpu", lambda: ("a test CPU", ("avx512f", "avx512_bf16")))
    fake = Clock()
    monkeypatch.setattr(execution, "clock", fake)
    return fake


def probes(clock: Clock, costs: dict[str, tuple[float, float, float]]):
    """A ``probe_for`` whose probes cost what ``costs`` says per path name
    ('float32/xla/reshape': (first, step, objective scale)); records each call."""
    made = []

    def probe_for(path: execution.Path) -> FakeProbe:
        made.append(path)
        return FakeProbe(clock, *costs[path.name])

    probe_for.made = made
    return probe_for


COSTS = {
    "float32/xla/reshape": (5.0, 1.0, 1.0),
    "float32/tf/reshape": (1.0, 0.9, 1.0),
    "mixed_bfloat16/xla/reshape": (5.0, 1.1, 1.004),
    "mixed_bfloat16/tf/reshape": (1.0, 0.7, 1.004),
    "mixed_bfloat16/tf/keras": (1.0, 0.5, 1.004),
}


def test_the_fastest_path_that_agrees_wins_and_is_remembered(clock):
    probe_for = probes(clock, COSTS)
    choice = execution.choose(nst.Config(), CPU, SHAPE, 500, probe_for)
    assert (choice.path, choice.how) == (execution.Path("mixed_bfloat16", False, "keras"), "measured")
    # precision x XLA raced first (float32 with XLA, the reference, first), then the pooling op on the winner
    assert [p.name for p in probe_for.made] == [*COSTS][:4] + ["mixed_bfloat16/tf/reshape", "mixed_bfloat16/tf/keras"]
    assert choice.seconds["mixed_bfloat16/tf/keras"] == (1.0, 0.5)
    assert "measured on this machine" in str(choice) and "mixed_bfloat16/tf/keras: 0.5 s/step" in str(choice)

    def no_probes(path):
        raise AssertionError("a remembered path measures nothing")

    again = execution.choose(nst.Config(), CPU, SHAPE, 500, no_probes)
    assert (again.path, again.how) == (choice.path, "remembered")
    # A size with about the same pixels is the same measurement; a quarter of them is not.
    assert execution.choose(nst.Config(), CPU, (1, 500, 520, 3), 500, no_probes).how == "remembered"
    assert execution.choose(nst.Config(), CPU, (1, 384, 384, 3), 500, probes(clock, COSTS)).how == "measured"
    assert len(json.loads(execution.remembered_file().read_text())) == 2
    # A run that forces part of the path is measured on its own, within what it forces.
    forced = execution.choose(
        nst.Config(precision="float32"), CPU, SHAPE, 500, probes(clock, {**COSTS, "float32/tf/keras": (1.0, 0.6, 1.0)})
    )
    assert (forced.path, forced.how) == (execution.Path("float32", False, "keras"), "measured")


def test_a_path_whose_objective_strays_is_never_chosen(clock):
    costs = {**COSTS, "mixed_bfloat16/tf/reshape": (1.0, 0.1, 1.05), "mixed_bfloat16/xla/reshape": (5.0, 0.2, 0.9)}
    choice = execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, {**costs, "float32/tf/keras": (1, 0.8, 1)}))
    assert choice.path == execution.Path("float32", False, "keras")
    assert "mixed_bfloat16/tf/reshape" not in choice.seconds  # 5% off float32: dropped
    assert json.loads(execution.remembered_file().read_text()).popitem()[1]["mixed_bfloat16/tf/reshape"] is None


def test_the_compilation_counts_for_a_run_of_few_steps(clock):
    costs = {
        "float32/xla/reshape": (40.0, 0.5, 1),
        "float32/tf/reshape": (1.0, 0.8, 1),
        "float32/xla/keras": (40.0, 0.6, 1),
    }
    config = nst.Config(precision="float32")
    short = execution.choose(config, CPU, SHAPE, 100, probes(clock, costs))
    assert short.path == execution.Path("float32", False, "reshape")  # 40 + 99 x 0.5 > 1 + 99 x 0.8
    long = execution.choose(config, CPU, SHAPE, 1000, lambda path: pytest.fail("remembered"))
    # 40 + 999 x 0.5 < 1 + 999 x 0.8
    assert (long.path, long.how) == (execution.Path("float32", True, "reshape"), "remembered")


def test_what_is_measured_and_what_is_not(clock):
    def never(path):
        raise AssertionError("nothing to measure")

    # Everything set: nothing to choose.
    fixed = nst.Config(precision="float32", jit_compile=False, pooling_op="keras")
    assert execution.choose(fixed, CPU, SHAPE, 500, never) == execution.Choice(
        execution.Path("float32", False, "keras"), "set"
    )
    # Small or short runs (every test), and live runs (no probe_for), take the unmeasured path.
    for shape, steps, probe_for in [((1, 128, 128, 3), 500, never), (SHAPE, 50, never), (SHAPE, 500, None)]:
        choice = execution.choose(nst.Config(), CPU, shape, steps, probe_for)
        assert (choice.path, choice.how) == (execution.Path("float32", True, "reshape"), "unmeasured")
    # The candidates follow the device and what the settings leave open.
    assert execution.candidates(nst.Config(), CPU) == (
        [execution.Path(p, x, "reshape") for p in ("float32", "mixed_bfloat16") for x in (True, False)],
        ["keras"],
    )
    assert execution.candidates(nst.Config(optimizer="lbfgs", jit_compile=True), GPU) == (
        [execution.Path("float32", True, "reshape")],
        ["keras"],
    )
    on_gpu, others = execution.candidates(nst.Config(pooling_op="keras"), GPU)
    assert on_gpu == [execution.Path(p, x, "keras") for p in ("float32", "mixed_float16") for x in (True, False)]
    assert others == []


@pytest.mark.parametrize("text", ["[]", "null", '"paths"', "{", ""])
def test_a_remembered_file_that_is_not_an_object_is_measured_over(clock, text):
    execution.remembered_file().write_text(text)
    choice = execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, COSTS))
    assert choice.how == "measured"
    assert len(json.loads(execution.remembered_file().read_text())) == 1


@pytest.mark.parametrize(
    "damage",
    [
        "fast",
        {},
        {"float32/xla/reshape": "fast"},
        {"float32/xla/reshape": [1.0]},
        {"float32/xla/reshape": [1.0, float("nan")]},
        {"float32": [1.0, 1.0]},
        {"float64/xla/reshape": [1.0, 1.0]},
        {"auto/xla/reshape": [1.0, 1.0]},
    ],
)
def test_a_malformed_measurement_is_measured_again(clock, damage):
    execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, COSTS))
    file = execution.remembered_file()
    (key,) = json.loads(file.read_text())
    file.write_text(json.dumps({key: damage}))
    again = execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, COSTS))
    assert (again.path, again.how) == (execution.Path("mixed_bfloat16", False, "keras"), "measured")


def test_a_cache_that_cannot_be_written_leaves_nothing_behind(clock, monkeypatch):
    def refuse(*args):
        raise PermissionError("read-only")

    monkeypatch.setattr(execution.os, "replace", refuse)
    choice = execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, COSTS))
    assert choice.how == "measured"  # the run goes on; the next one measures again
    folder = execution.remembered_file().parent
    assert not list(folder.glob("*.tmp")) and not execution.remembered_file().exists()


def test_processes_writing_at_once_keep_every_measurement(clock, monkeypatch):
    """Read, merge and replace under a lock: with a slow read (the window
    in which two writers would each drop the other's entry), four writers
    at once keep all four measurements."""
    real = execution._remembered

    def slow() -> dict:
        kept = real()
        time.sleep(0.05)
        return kept

    monkeypatch.setattr(execution, "_remembered", slow)
    writers = [
        threading.Thread(target=execution._remember, args=(f"key{i}", {"float32/xla/reshape": [1.0, 1.0]}))
        for i in range(4)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sorted(json.loads(execution.remembered_file().read_text())) == [f"key{i}" for i in range(4)]


def test_another_version_setting_or_share_of_the_cores_measures_again(clock, monkeypatch):
    execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, COSTS))
    changes = [
        lambda: monkeypatch.setattr(execution, "__version__", "0.0.0-other"),
        lambda: monkeypatch.setattr(tf, "__version__", "0.0-other"),
        lambda: monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0"),
        lambda: monkeypatch.setattr(tf.config.threading, "get_intra_op_parallelism_threads", lambda: 97),
        lambda: monkeypatch.setattr(execution.os, "sched_getaffinity", lambda pid: set(range(63)), raising=False),
    ]
    for change in changes:
        change()
        assert execution.choose(nst.Config(), CPU, SHAPE, 500, probes(clock, COSTS)).how == "measured"
    assert len(json.loads(execution.remembered_file().read_text())) == 1 + len(changes)


def test_a_cpu_without_native_bfloat16_tries_float32_only(monkeypatch):
    monkeypatch.setattr(execution, "cpu", lambda: ("an older CPU", ("avx2", "fma")))
    assert {p.precision for p in execution.candidates(nst.Config(), CPU)[0]} == {"float32"}
    assert "an older CPU [avx2 fma]" in execution.fingerprint(CPU)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_a_measured_run_records_its_path_and_equals_the_run_told_that_path(
    optimizer, monkeypatch, tmp_path, content_image, style_image
):
    """The measurement steps the run itself on each path (its first steps at
    the largest scale, Adam's or L-BFGS's), then the run starts afresh."""
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    monkeypatch.setattr(execution, "MEASURE_PIXELS", 0)
    monkeypatch.setattr(execution, "MEASURE_STEPS", 0)
    settings = {**TINY, "seed": 1, "optimizer": optimizer}
    measured = nst.stylize(content_image, style_image, **settings)
    assert "(measured on this machine;" in measured.settled and "float32/xla/reshape" in measured.settled
    chosen = {k: getattr(measured.config, k) for k in ("precision", "jit_compile", "pooling_op")}
    assert measured.path == str(execution.Path(**chosen)) and measured.settled.startswith(measured.path)
    told = nst.stylize(content_image, style_image, **settings, **chosen)
    assert (told.path, told.settled) == (measured.path, f"{measured.path} (set)")
    np.testing.assert_array_equal(told.best_image, measured.best_image)
    # The PNG records the path, not how it was settled: the next run (remembered) writes the same file.
    again = nst.stylize(content_image, style_image, **settings)
    assert again.settled.startswith(f"{measured.path} (remembered")
    first, second = measured.save(tmp_path / "first.png"), again.save(tmp_path / "second.png")
    assert read_metadata(first)["path"] == measured.path
    assert first.read_bytes() == second.read_bytes()
    # A resumed run settles its path afresh (the PNG may come from another machine).
    args = options.build_parser().parse_args(["sample:tubingen", "sample:starry_night", "--resume", str(first)])
    resumed = options.resume(args)
    assert (resumed.precision, resumed.jit_compile, resumed.pooling_op) == ("auto", None, None)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_keras_pooling_and_the_reshape_compute_the_same_objective(pooling, content_image, style_image):
    settings = {**TINY, "size": 40, "steps": 2, "pooling": pooling, "precision": "float32", "jit_compile": False}
    runs = {op: nst.stylize(content_image, style_image, **settings, pooling_op=op) for op in ("keras", "reshape")}
    for term in runs["keras"].history:
        if term != "time":
            np.testing.assert_allclose(runs["keras"].history[term], runs["reshape"].history[term], rtol=1e-5)


def test_keras_pooling_in_tiles_gives_the_untiled_objective(content_image, style_image):
    settings = {**TINY, "size": 64, "steps": 2, "pooling_op": "keras", "precision": "float32", "jit_compile": False}
    whole, tiled = (nst.stylize(content_image, style_image, **settings, tile=tile) for tile in (None, 32))
    np.testing.assert_allclose(tiled.history["total"], whole.history["total"], rtol=1e-5)


def test_xla_keeps_its_programs_in_the_cache_for_the_next_process(tmp_path):
    code = (
        "import nst, os\n"
        "from nst.base.cache import xla_dir\n"
        "nst.stylize('sample:tubingen', 'sample:starry_night', size=32, steps=2, weights='random', seed=0,\n"
        "            style_layers=('block1_conv1',), content_layers=('block1_conv2',), jit_compile=True)\n"
        "print(os.environ['TF_XLA_FLAGS'], len(list(xla_dir().glob('*.pb'))))\n"
    )
    # TensorFlow's persistor says when it compiles and saves a program.
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.update(NST_CACHE=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="device_executable_persistor=3")

    def run() -> tuple[list[str], int]:
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return done.stdout.split(), done.stderr.count("XlaSerializedCacheEntry saved")

    (flag, programs), saved = run()
    assert flag.startswith(f"--tf_xla_persistent_cache_directory={tmp_path}/xla/")
    assert int(programs) == saved >= 1
    assert run() == ([flag, programs], 0)  # the next process loads them: it compiles and saves none
    env["TF_XLA_FLAGS"] = f"--tf_xla_persistent_cache_directory={tmp_path / 'mine'}"
    assert run()[0][0] == env["TF_XLA_FLAGS"]  # a folder the user names wins
