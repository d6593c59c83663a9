"""Every code block of the README runs as written.

Python blocks are executed top to bottom, in a folder where the file names
they use (photo.jpg, painting.jpg, a.jpg, b.jpg) are small copies of the
sample images, with every run cut to a tiny size, few steps and random
weights (offline, and to keep the suite quick); nothing else is changed.
Command lines are parsed and their settings checked exactly as `nst` would
before a run (the runs themselves are the CLI tests' business).
"""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

import nst
from nst import cli, clips, options, video
from nst.images import load_image, read_metadata, sample_path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", README.read_text(), flags=re.S)
PYTHON = [code for kind, code in BLOCKS if kind == "python"]
#: The README's file names, and the samples they stand for.
FILES = {"photo.jpg": "tubingen", "painting.jpg": "starry_night", "a.jpg": "starry_night", "b.jpg": "the_scream"}


@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    for name, sample in FILES.items():
        with Image.open(sample_path(sample)) as im:
            im.convert("RGB").resize((64, 48)).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    real = nst.scene.settings

    def tiny(config, overrides):  # what a run would do, at 32 px for 2 steps on random weights
        c = real(config, overrides)
        return c.replace(size=32, steps=2, scales=(24, 32) if c.scales else None, scale_steps=None, weights="random")

    for module in (nst.optimize, nst.live, video):  # each module's own name for nst.scene.settings
        monkeypatch.setattr(module, "settings", tiny)
    photo = load_image(tmp_path / "photo.jpg")
    clips.write_clip(tmp_path / "clip.mp4", [photo[:, t : t + 56] for t in range(3)], fps=10)  # a short pan
    return tmp_path


def test_the_readme_has_code_to_check():
    assert len(PYTHON) >= 4 and any("LivePreview" in code for code in PYTHON)


def made_the_preview(ns: dict, printed: str) -> None:
    assert ns["preview"].updates >= 1 and ns["preview"].history["step"] == ns["result"].history["step"]
    assert Image.open(io.BytesIO(ns["preview"].current_view.value)).format == "JPEG"


def saved_with_settings(ns: dict, printed: str) -> None:
    meta = read_metadata("out.png")
    assert meta["settings"]["size"] == 32 and load_image("out.png").shape == (24, 32, 3)
    assert ns["result"].config.loss_form == "tutorial"  # the preset it starts from
    assert [line.split()[:2] for line in printed.splitlines()] == [["0", "2"], ["2", "2"]]  # step, steps


def steered(ns: dict, printed: str) -> None:
    result = ns["result"]
    assert result.changes[0]["style_weight"] == 1e4 and result.changes[0]["learning_rate"] == 0.01
    assert result.history["step"][-1] == 2 + 100 and result.history["style_weight"][-1] == 1e4


def animated(ns: dict, printed: str) -> None:
    assert ns["result"].config.optimizer == "lbfgs" and ns["frames"]
    assert Image.open("run.gif").n_frames == len(ns["frames"])


def made_a_video(ns: dict, printed: str) -> None:
    frames = ns["result"].frames
    assert Image.open("out.gif").n_frames == len(frames) == 3
    records = [read_metadata(f) for f in frames]  # (steps here are the suite's 2: see readme_folder)
    assert [r["frame"] for r in records] == [0, 1, 2] and records[0]["video"]["frame_steps"] == 80


def ran_every_job(ns: dict, printed: str) -> None:
    jobs, results = ns["jobs"], ns["results"]
    assert len(jobs) == len(results) == 6
    assert [r.config.style_weight for r in results] == [job.settings["style_weight"] for job in jobs]


#: What each Python block says it produces, found by a line it has.
PRODUCES = {"LivePreview(": made_the_preview, 'result.save("out.png")': saved_with_settings,
            "nst.live.start(": steered, 'save_animation("run.gif"': animated, "stylize_video(": made_a_video,
            "stylize_many(": ran_every_job}  # fmt: skip


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(code, readme_folder, capsys):
    checks = [check for line, check in PRODUCES.items() if line in code]
    assert checks, "a README block with nothing here to check what it produces: add it to PRODUCES"
    ns = {"__name__": "readme"}
    exec(compile(code, "README.md (a python block)", "exec"), ns)
    printed = capsys.readouterr().out
    for check in checks:
        check(ns, printed)


def command_lines() -> list[list[str]]:
    """Each `nst ...` command of the README's shell blocks (continuations joined, comments dropped)."""
    lines = []
    for kind, code in BLOCKS:
        if kind != "bash":
            continue
        for line in code.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["nst"] or words[:3] == ["python", "-m", "nst"]:
                lines.append(words[3:] if words[0] == "python" else words[1:])
    return lines


@pytest.mark.parametrize("argv", command_lines(), ids=" ".join)
def test_command_line_is_valid(argv, capsys, monkeypatch, tmp_path):
    if argv[:1] == ["figures"]:
        cli.figures_parser().parse_args(argv[1:])
        return
    if argv[:1] == ["weights"]:  # run for real, into a cache of the test's own
        monkeypatch.setenv("NST_CACHE", str(tmp_path))
        monkeypatch.chdir(README.parent)
        assert cli.main(argv) == 0, capsys.readouterr().err
        return
    if argv[:1] == ["video"]:
        args = options.video_parser().parse_args(argv[1:])
        options.settings(args), options.video_settings(args)
        return
    if argv == ["--help"]:
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0 and "usage: nst" in capsys.readouterr().out
        return
    args = options.build_parser().parse_args(argv)
    config = options.settings(args)
    options.sweep(args, config)
    assert args.content or args.demo or args.resume
