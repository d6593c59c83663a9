"""Every code block of the README runs as written.

Python blocks are executed top to bottom, in a folder where the file names
they use (photo.jpg, painting.jpg, a.jpg, b.jpg) are small copies of the
sample images, with every run cut to a tiny size, few steps and random
weights (offline, and to keep the suite quick); nothing else is changed.
Command lines are parsed and their settings checked exactly as `nst` would
before a run (the runs themselves are the CLI tests' business).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

import nst
from nst import cli, clips, options, video
from nst.images import load_image, sample_path

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


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_block_runs_as_written(code, readme_folder):
    exec(compile(code, "README.md (a python block)", "exec"), {"__name__": "readme"})


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
def test_command_line_is_valid(argv, capsys):
    if argv[:1] == ["figures"]:
        from nst.figures import build_parser

        build_parser().parse_args(argv[1:])
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
