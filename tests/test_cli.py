"""The command line end to end: writes a PNG that records its settings,
reports bad input before TensorFlow loads, and meets the issue's check with
the real block 1-3 weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import BLOCK13_LAYERS, Watched
from PIL import Image

from nst.io.images import load_image, read_metadata, save_image
from nst.ui import cli, options


def nst_process(*args: str) -> subprocess.CompletedProcess:
    """`python -m nst ARGS`, reporting whether TensorFlow got imported."""
    code = "import sys, runpy; sys.argv = ['nst', *sys.argv[1:]]\ntry:\n    runpy.run_module('nst', run_name='__main__')\nfinally:\n    print('TF-LOADED' if 'tensorflow' in sys.modules else 'TF-NOT-LOADED', file=sys.stderr)"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, content_image, style_image):
    folder = tmp_path_factory.mktemp("pictures")
    return str(save_image(folder / "content.png", content_image)), str(save_image(folder / "style.png", style_image))


def test_cli_writes_png_with_settings(pictures, tmp_path, capsys):
    out = tmp_path / "out.png"
    content, style = pictures
    code = cli.main(
        [
            content,
            style,
            "-o",
            str(out),
            "--size",
            "32",
            "--steps",
            "3",
            "--weights",
            "random",
            "--seed",
            "1",
            "--style-weight",
            "50",
            "--style-layers",
            "block1_conv1",
            "block2_conv1",
            "--style-layer-weights",
            "0.75",
            "0.25",
            "--content-layers",
            "block2_conv2",
            "--save-every",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    meta = read_metadata(out)
    assert meta["settings"]["steps"] == 3 and meta["settings"]["style_weight"] == 50.0
    assert meta["settings"]["style_layers"] == ["block1_conv1", "block2_conv1"]
    assert meta["settings"]["style_layer_weights"] == [0.75, 0.25]
    assert meta["settings"]["weights"] == "random" and meta["content"] == content
    assert Image.open(out).size == (32, 24)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out-00000.png", "out-00002.png", "out.png"]
    assert read_metadata(tmp_path / "out-00002.png")["step"] == 2
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_sweep_writes_one_png_per_run_as_separate_runs_would(pictures, tmp_path, capsys):
    content, style = pictures
    common = [
        content,
        style,
        "--size",
        "32",
        "--steps",
        "3",
        "--weights",
        "random",
        "--seed",
        "1",
        "--quiet",
        *("--style-layers", "block1_conv1", "block2_conv1", "--content-layers", "block2_conv2"),
    ]
    code = cli.main(
        [*common, "-o", str(tmp_path / "grid.png"), "--sweep", "style-weight=10,1e4", "--sweep", "tv-weight=0,1"]
    )
    assert code == 0
    names = [f"grid-style-weight-{b}-tv-weight-{t}.png" for b in ("10", "1e4") for t in ("0", "1")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert capsys.readouterr().out.count("nst: wrote") == 4
    settings = read_metadata(tmp_path / names[2])["settings"]
    assert (settings["style_weight"], settings["tv_weight"]) == (1e4, 0.0)
    # One of them, alone: the same image (the batch is four independent runs).
    assert cli.main([*common, "-o", str(tmp_path / "alone.png"), "--style-weight", "1e4", "--tv-weight", "0"]) == 0
    swept, alone = load_image(tmp_path / names[2]), load_image(tmp_path / "alone.png")
    assert np.abs(swept - alone).max() <= 2 / 255  # 8-bit PNGs; batching reorders sums
    assert np.abs(swept - load_image(tmp_path / names[0])).mean() > 0.01  # and the settings did differ


def test_every_control_reaches_the_config():
    args = options.build_parser().parse_args(
        [
            "c.png",
            "s1.png",
            "s2.png",
            "--optimizer",
            "lbfgs",
            "--lbfgs-memory",
            "7",
            "--scales",
            "128",
            "256",
            "--scale-steps",
            "50",
            "20",
            "--style-blend",
            "0.7",
            "0.3",
            "--style-scale",
            "0.5",
            "--pooling",
            "avg",
            "--preserve-color",
            "luminance",
            "--init",
            "start.png",
            "--seed",
            "5",
            "--style-layer-weights",
            "1",
            "0",
            "0",
            "0",
            "0",
            "--no-xla",
        ]
    )
    config = options.config_from(args)
    assert args.style == ["s1.png", "s2.png"]
    assert (config.optimizer, config.lbfgs_memory, config.pooling, config.preserve_color) == (
        "lbfgs",
        7,
        "avg",
        "luminance",
    )
    assert config.scales == (128, 256) and config.size == 256 and list(config.schedule) == [(128, 50), (256, 20)]
    assert config.style_blend == (0.7, 0.3) and config.style_scale == 0.5
    assert (config.init, config.seed, config.jit_compile) == ("start.png", 5, False)
    assert config.style_layer_weights == (1.0, 0.0, 0.0, 0.0, 0.0)


def test_cli_blends_styles_coarse_to_fine_with_lbfgs_and_animates(pictures, tmp_path):
    out, gif = tmp_path / "out.png", tmp_path / "run.gif"
    content, style = pictures
    code = cli.main(
        [
            content,
            style,
            content,
            "-o",
            str(out),
            "--style-blend",
            "3",
            "1",
            "--scales",
            "16",
            "32",
            "--scale-steps",
            "2",
            "2",
            "--optimizer",
            "lbfgs",
            "--weights",
            "random",
            "--seed",
            "1",
            "--style-layers",
            "block1_conv1",
            "--content-layers",
            "block2_conv1",
            "--save-every",
            "2",
            "--animate",
            str(gif),
            "--quiet",
        ]
    )
    assert code == 0
    meta = read_metadata(out)
    assert meta["style"] == f"{style} + {content}" and meta["settings"]["scales"] == [16, 32]
    assert meta["steps_done"] == 4 and Image.open(out).size == (32, 24)
    assert sorted(p.name for p in tmp_path.glob("out-*.png")) == ["out-00000.png", "out-00002.png", "out-00004.png"]
    with Image.open(gif) as animation:
        # Frames at steps 0, 2 (end of the first scale), 2 (start of the second) and 4, all at the output size.
        assert animation.n_frames == 4 and animation.size == (32, 24)


def test_same_seed_gives_a_bit_identical_png(pictures, tmp_path):
    outputs = [tmp_path / "a.png", tmp_path / "b.png"]
    for out in outputs:
        assert (
            cli.main(
                [
                    *pictures,
                    "-o",
                    str(out),
                    "--size",
                    "32",
                    "--steps",
                    "3",
                    "--weights",
                    "random",
                    "--seed",
                    "9",
                    "--init",
                    "noise",
                    "--style-layers",
                    "block1_conv1",
                    "--content-layers",
                    "block2_conv1",
                    "--quiet",
                ]
            )
            == 0
        )
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


def test_help_lists_options_with_defaults():
    text = options.build_parser().format_help()
    for flag in ("--style-weight", "--content-layers", "--weights", "--preset", "--save-every", "--demo"):
        assert flag in text
    assert "(report: 1000.0)" in text and "block4_conv2" in text


def test_missing_input_fails_fast_without_tensorflow(tmp_path):
    out = tmp_path / "out.png"
    proc = nst_process(str(tmp_path / "nope.jpg"), str(tmp_path / "style.jpg"), "-o", str(out))
    assert proc.returncode == 2
    assert f"nst: error: {tmp_path / 'nope.jpg'}: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr and "TF-NOT-LOADED" in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "steps must be from 1 to"),
        (["--style-layers", "block9_conv1"], "unknown VGG19 layer 'block9_conv1'"),
        (["-o", "out.jpg"], "must be a .png"),
        (["--style-layer-weights", "1", "2"], "2 values but there are 5 style layers"),
        (["--style-blend", "1", "2"], "--style-blend has 2 weights for 1 style image"),
        (["--optimizer", "sgd"], "unknown optimizer 'sgd'; choose one of: adam, lbfgs"),
        (["--scales", "256", "128"], "scales must be increasing"),
        (["--init", "nosie.png"], "--init: nosie.png: no such file"),
        (["--animate", "run.txt"], "--animate writes a .gif or a video (.mp4, .webm"),
        (["--sweep", "style-weight=1e3,lots"], "--sweep style-weight=1e3,lots: could not convert string to float"),
        (["--sweep", "style-layers=block1_conv1"], "--sweep style-layers=block1_conv1: give OPTION=V1,V2,..."),
        (["--sweep", "steps=4,0"], "steps must be from 1 to"),
        (["--sweep", "seed=1,2", "--save-every", "2"], "--sweep writes one PNG per run; it does not go with"),
        (["--weights", "no-such-weights.npz"], "no-such-weights.npz: no such weights file"),
        (["--steps", "nan"], "invalid int value: 'nan'"),
        (["--style-weight", "nan"], "--style-weight must be a finite number >= 0"),
    ],
)
def test_bad_settings_fail_fast(pictures, args, message, tmp_path):
    proc = nst_process(*pictures, "-o", str(tmp_path / "out.png"), *args)
    assert proc.returncode == 2 and message in proc.stderr and "TF-NOT-LOADED" in proc.stderr


def test_weights_without_the_layers_needed_are_refused_before_tensorflow(pictures, tmp_path):
    partial = tmp_path / "partial.npz"
    np.savez(
        partial,
        **{"block1_conv1/kernel": np.zeros((3, 3, 3, 64), np.float32), "block1_conv1/bias": np.zeros(64, np.float32)},
    )
    proc = nst_process(*pictures, "-o", str(tmp_path / "o.png"), "--weights", str(partial))
    assert proc.returncode == 2 and "TF-NOT-LOADED" in proc.stderr
    assert "has no weights for layer block1_conv2, which the chosen layers need" in proc.stderr
    assert not (tmp_path / "o.png").exists()


def test_a_run_prints_its_progress_and_summary_once_and_no_tensorflow_banner(pictures, tmp_path):
    """What a terminal or a log shows: no C++ start-up lines from TensorFlow,
    the full bar once (not again when it closes), one summary line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nst",
            *pictures,
            "-o",
            str(tmp_path / "o.png"),
            "--size",
            "32",
            "--steps",
            "5",
            "--weights",
            "random",
            "--style-layers",
            "block1_conv1",
            "--content-layers",
            "block1_conv2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for banner in ("absl::InitializeLog", "oneDNN custom operations", "cuda"):
        assert banner not in proc.stderr
    assert proc.stderr.count("5/5") == 1 and proc.stdout.count("nst: wrote") == 1
    # The random weights' warning: once, one line, no Python source line.
    assert proc.stderr.count("nst: warning: VGG19 has random weights") == 1
    assert "UserWarning" not in proc.stderr and "warnings.warn(" not in proc.stderr


def test_help_names_the_subcommands_and_reads_cleanly():
    text = options.build_parser().format_help()
    usage = text.split("\n\n")[0]
    assert usage.startswith("usage: nst CONTENT STYLE") and "nst figures" in usage and "--resume" in usage
    assert "nst weights [install PATH [--link]]" in usage
    assert ".;" not in text and "Adam. gatys: The paper's network" in " ".join(text.split())


def test_bad_weights_are_a_clear_error(pictures, tmp_path, capsys):
    code = cli.main([*pictures, "-o", str(tmp_path / "o.png"), "--weights", str(tmp_path / "w.npz"), "--quiet"])
    assert code == 2 and "no such weights file" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_weights_install_makes_a_file_the_default_for_later_runs(
    block13_weights, pictures, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NST_VGG19_WEIGHTS", raising=False)
    assert cli.main(["weights"]) == 0 and "nothing installed" in capsys.readouterr().out
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not weights")
    assert cli.main(["weights", "install", str(broken)]) == 2
    assert "broken.npz: not a readable .npz weights file" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "weights").exists()

    assert cli.main(["weights", "install", str(block13_weights)]) == 0
    installed = tmp_path / "cache" / "weights" / block13_weights.name
    said = capsys.readouterr().out
    assert f"at {installed}" in said and "block3_conv4" in said and "block4_conv1" not in said
    assert installed.read_bytes() == block13_weights.read_bytes() and not installed.is_symlink()
    assert cli.main(["weights"]) == 0 and f"installed in {installed.parent}" in capsys.readouterr().out

    out = tmp_path / "o.png"  # no --weights, no $NST_VGG19_WEIGHTS: the installed file
    assert (
        cli.main([*pictures, "-o", str(out), "--preset", "blocks1-3", "--size", "32", "--steps", "1", "--quiet"]) == 0
    )
    assert read_metadata(out)["settings"]["weights"] == str(installed)
    code = cli.main([*pictures, "-o", str(out), "--size", "32", "--steps", "1", "--quiet"])  # the paper's layers
    assert code == 2 and "has no weights for layer block4_conv1" in capsys.readouterr().err

    assert cli.main(["weights", "install", "--link", str(block13_weights)]) == 0  # replaces the copy
    assert installed.is_symlink() and list(installed.parent.iterdir()) == [installed]
    moved = tmp_path / "moved.npz"  # a link whose file then goes away, replaced by a new install
    moved.write_bytes(block13_weights.read_bytes())
    assert cli.main(["weights", "install", "--link", str(moved)]) == 0
    moved.unlink()
    assert cli.main(["weights", "install", str(block13_weights)]) == 0
    assert list(installed.parent.iterdir()) == [installed] and not installed.is_symlink()


@pytest.mark.real_weights
def test_cli_real_weights_reach_a_tenth_of_the_objective(block13_weights, pictures, tmp_path):
    """The issue's acceptance check: 128 px, alpha=1, beta=1e3, blocks 1-3, 100 steps."""
    out = tmp_path / "real.png"
    code = cli.main(
        [
            *pictures,
            "-o",
            str(out),
            "--size",
            "128",
            "--steps",
            "100",
            "--weights",
            str(block13_weights),
            "--content-weight",
            "1",
            "--style-weight",
            "1e3",
            "--style-layers",
            *BLOCK13_LAYERS["style_layers"],
            "--content-layers",
            *BLOCK13_LAYERS["content_layers"],
            "--quiet",
        ]
    )
    assert code == 0
    meta = read_metadata(out)
    assert meta["best_loss"] < 0.1 * meta["start_loss"]
    output, content = load_image(out), load_image(pictures[0], size=128)
    assert output.shape == content.shape and np.abs(output - content).mean() > 0.03  # it changed visibly


def test_module_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "nst", "--version"], capture_output=True, text=True, env={**os.environ}
    )
    assert proc.returncode == 0 and proc.stdout.startswith("nst ")


@pytest.mark.parametrize("signum, status", [(2, 130), (15, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_saves_its_best_image(pictures, tmp_path, signum, status):
    out = tmp_path / "out.png"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nst",
            *pictures,
            "-o",
            str(out),
            "--size",
            "32",
            "--steps",
            "100000",
            "--weights",
            "random",
            "--style-layers",
            "block1_conv1",
            "--content-layers",
            "block1_conv2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a suite started in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err = Watched(proc, proc.stderr)
    err.wait_for(r"\b([2-9]|\d{2,})/100000")  # the progress bar: a few steps done, the run in its loop
    proc.send_signal(signum)
    stderr, stdout = err.rest(), proc.stdout.read()
    assert proc.returncode == status, stderr
    meta = read_metadata(out)
    assert meta["stopped"] == "interrupted" and 0 < meta["steps_done"] < 100000
    assert "stopped early: interrupted" in stdout


def test_interrupt_before_the_first_step_still_saves(pictures, tmp_path, monkeypatch, capsys):
    """SIGTERM during compilation: no step recorded, the starting image is still written."""
    import nst.run.optimize

    def interrupted_at_once(content, style, *, config, callback, masks, style_masks):
        start = load_image(content, size=config.size)
        return nst.run.optimize.Result(
            image=start,
            best_image=start,
            best_step=0,
            best_loss=float("inf"),
            history={},
            timings={"total": 1.0, "step": 0.0},
            config=config,
            sources={},
            stopped="interrupted",
        )

    monkeypatch.setattr(nst.run.optimize, "stylize", interrupted_at_once)
    out = tmp_path / "out.png"
    assert cli.main([*pictures, "-o", str(out), "--size", "32", "--weights", "random", "--quiet"]) == 130
    meta = read_metadata(out)
    assert meta["steps_done"] == 0 and meta["start_loss"] is None and meta["stopped"] == "interrupted"
    np.testing.assert_allclose(load_image(out), load_image(pictures[0], size=32), atol=1 / 255)
    assert "stopped early: interrupted" in capsys.readouterr().out


def test_resume_goes_on_from_a_saved_run(pictures, tmp_path, capsys):
    """An interrupted run (2 of 6 steps) resumed: same settings and inputs,
    starts at the saved image's loss, does the 4 steps left, says so."""
    import nst

    def stop_at_2(progress):
        if progress.step == 2:
            raise KeyboardInterrupt

    content, style = pictures
    first = nst.stylize(
        content,
        style,
        size=32,
        steps=6,
        weights="random",
        seed=1,
        style_weight=50.0,
        style_layers=("block1_conv1",),
        content_layers=("block2_conv1",),
        callback=stop_at_2,
    )
    saved = first.save(tmp_path / "run.png")
    assert read_metadata(saved)["steps_done"] == 2
    assert cli.main(["--resume", str(saved), "-o", str(tmp_path / "more.png"), "--quiet"]) == 0
    meta = read_metadata(tmp_path / "more.png")
    assert meta["steps_done"] == 4 and meta["resumed_from"] == {"path": str(saved), "steps_done": 2}
    assert meta["content"] == content and meta["styles"] == [style]
    recorded = read_metadata(saved)["settings"]
    resumed = ("init", "steps", "adam_warm_start")
    assert {k: v for k, v in meta["settings"].items() if k not in resumed} == {
        k: v for k, v in recorded.items() if k not in resumed
    }
    assert meta["settings"]["adam_warm_start"] and not recorded["adam_warm_start"]
    assert meta["settings"]["init"] == str(saved.resolve())
    # It starts where the first run's saved (8-bit) image is, not from the content.
    assert meta["start_loss"] == pytest.approx(first.best_loss, rel=0.05)
    # Without -o it writes back to the file it resumed; a PNG without settings is refused.
    assert cli.main(["--resume", str(tmp_path / "more.png"), "--steps", "1", "--quiet"]) == 0
    assert read_metadata(tmp_path / "more.png")["steps_done"] == 1
    plain = save_image(tmp_path / "plain.png", load_image(content, size=32))
    capsys.readouterr()
    assert cli.main(["--resume", str(plain)]) == 2
    assert "records no settings" in capsys.readouterr().err


@pytest.mark.real_weights
def test_a_short_resume_goes_on_downhill(block13_weights, pictures, tmp_path):
    """A run stopped at step 150 and resumed for 5 steps carries on with its
    Adam state (recorded in the PNG): every step lowers the loss, where a
    fresh Adam's lr-sized first steps would climb away from the image."""
    import nst

    def stop_at_150(progress):
        if progress.step == 150:
            raise KeyboardInterrupt

    first = nst.stylize(
        pictures[0],
        pictures[1],
        preset="blocks1-3",
        size=64,
        steps=300,
        weights=str(block13_weights),
        callback=stop_at_150,
    )
    saved = first.save(tmp_path / "run.png")
    assert read_metadata(saved)["adam"]["iterations"] in (150, 151)  # the update after the last report may have run
    assert cli.main(["--resume", str(saved), "--steps", "5", "-o", str(tmp_path / "more.png"), "--quiet"]) == 0
    meta = read_metadata(tmp_path / "more.png")
    assert meta["best_step"] == 5 and meta["best_loss"] < meta["start_loss"]
    # What a fresh Adam does from the same image: it climbs.
    fresh = nst.stylize(
        pictures[0], pictures[1], preset="blocks1-3", size=64, steps=5, weights=str(block13_weights), init=str(saved)
    )
    assert fresh.history["total"][1] > fresh.history["total"][0]
