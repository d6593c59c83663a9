"""Every code block of the README and of docs/ runs as written, and the
API reference lists every public name.

Each page runs in a folder of its own where the file names the pages use
(photo.jpg, painting.jpg, a.jpg, b.jpg, starry_night.jpg, photos/, masks, a short
clip, folders of frames, and ``../shared`` where this checkout has it) are
small copies of the sample images. The one change, stated here: every run
is cut to 32 px, 2 steps and random weights (offline, and to keep the
suite quick); nothing else is changed.

- Python blocks are executed top to bottom, and each one's check asserts
  what the text says it makes (`PRODUCES`).
- Shell blocks: every ``nst`` command runs in order, in the page's folder,
  through the command line's own entry point, and must exit 0 and write the
  output it names. ``make TARGET`` must name a target of the Makefile. Set-up
  lines (``pip install``, ``source``, ``export``) are not run here: the
  install is `tests/test_install.py`'s business, and the suite runs in the
  venv they make. Nor are ``ray start``/``ray stop``: a command for a Ray
  cluster runs on one that Ray starts for it here (``--cluster local``;
  `tests/test_cluster.py` starts clusters of separate processes).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
from pathlib import Path

import pytest
from conftest import SHARED
from PIL import Image

import nst
from nst.io import clips
from nst.io.images import load_image, read_metadata, sample_path
from nst.modes import video
from nst.ui import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
BLOCKS = [(page, kind, code) for page in PAGES for kind, code in FENCE.findall(page.read_text())]
PYTHON = [(page, code) for page, kind, code in BLOCKS if kind == "python"]
#: The pages' file names, and the samples they stand for.
FILES = {
    "photo.jpg": "tubingen",
    "painting.jpg": "starry_night",
    "a.jpg": "starry_night",
    "b.jpg": "the_scream",
    "starry_night.jpg": "starry_night",
    "photos/tubingen.jpg": "tubingen",
    "photos/shipwreck.jpg": "shipwreck",
}
EIGHT_BIT = SHARED / "weights" / "vgg19_imagenet_8bit.npz"


@pytest.fixture
def page_folder(tmp_path, monkeypatch):
    folder = tmp_path / "work"
    (folder / "photos").mkdir(parents=True)
    for name, sample in FILES.items():
        with Image.open(sample_path(sample)) as im:
            im.convert("RGB").resize((64, 48)).save(folder / name)
    for name, (left, right) in {"sky.png": (255, 0), "town.png": (0, 255), "top.png": (255, 255)}.items():
        mask = Image.new("L", (64, 48), left)
        mask.paste(right, (0, 24, 64, 48))
        mask.save(folder / name)
    regions = Image.new("RGB", (64, 48), (0, 0, 255))
    regions.paste((255, 128, 0), (0, 24, 64, 48))
    regions.save(folder / "regions.png")
    photo = load_image(folder / "photo.jpg")
    pan = [photo[:, t : t + 56] for t in range(3)]
    clips.write_clip(folder / "clip.mp4", pan, fps=10)  # a short pan
    for name in ("frames", "pan"):
        (folder / name).mkdir()
        for i, frame in enumerate(pan):
            Image.fromarray((frame * 255).astype("uint8")).save(folder / name / f"{i:03d}.png")
    if SHARED.is_dir():
        (tmp_path / "shared").symlink_to(SHARED)  # the pages' ../shared
    monkeypatch.chdir(folder)
    real = nst.io.jobs.config_for

    def cut(c):  # what a run would do, at 32 px for 2 steps on random weights
        return c.replace(size=32, steps=2, scales=(28, 32) if c.scales else None, scale_steps=None, weights="random")

    for module in (
        nst.run.optimize,
        nst.run.live,
        video,
        nst.modes.batch,
    ):  # each module's own name for nst.io.jobs.config_for
        monkeypatch.setattr(module, "config_for", lambda config, overrides: cut(real(config, overrides)))
    command_line = cli.config_from  # and the command line's, so that what it records is what runs
    monkeypatch.setattr(cli, "config_from", lambda args: cut(command_line(args)))
    return folder


def test_the_pages_have_code_to_check():
    assert len(PYTHON) >= 6 and any("LivePreview" in code for _, code in PYTHON)
    assert {kind for _, kind, _ in BLOCKS} == {"python", "bash"}, "a block of another kind: teach this test to run it"


def saved_a_png(ns: dict, printed: str) -> None:
    meta = read_metadata("out.png")
    assert meta["settings"]["size"] == 32 and load_image("out.png").shape == (24, 32, 3)


def saved_with_settings(ns: dict, printed: str) -> None:
    assert ns["result"].config.loss_form == "tutorial"  # the preset it starts from
    assert [line.split()[:2] for line in printed.splitlines()] == [["0", "2"], ["2", "2"]]  # step, steps


def made_the_preview(ns: dict, printed: str) -> None:
    assert ns["preview"].updates >= 1 and ns["preview"].history["step"] == ns["result"].history["step"]
    assert Image.open(io.BytesIO(ns["preview"].current_view.value)).format == "JPEG"


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
    records = [read_metadata(f) for f in frames]  # (steps here are the suite's 2: see page_folder)
    assert [r["frame"] for r in records] == [0, 1, 2] and records[0]["video"]["frame_steps"] == 80


def ran_every_job(ns: dict, printed: str) -> None:
    jobs, results = ns["jobs"], ns["results"]
    assert len(jobs) == len(results) == 6
    assert [r.config.style_weight for r in results] == [job.settings["style_weight"] for job in jobs]


def styled_two_regions(ns: dict, printed: str) -> None:
    assert read_metadata("out.png")["masks"] == ["sky.png", "town.png"]


def wrote_a_folder(ns: dict, printed: str) -> None:
    report = ns["report"]
    names = [
        "photo--a--style-weight-1000",
        "photo--a--style-weight-10000",
        "photo--a+b--style-weight-1000",
        "photo--a+b--style-weight-10000",
    ]
    assert sorted(report.results) == sorted(names) and not report.skipped and not report.failures
    assert all(read_metadata(f"styled/{name}.png")["batch"]["name"] == name for name in names)


def ran_on_ray(ns: dict, printed: str) -> None:
    names = [f"photo--{s}--style-weight-{w}" for s in "ab" for w in (1000, 10000)]
    assert sorted(ns["report"].results) == names and not ns["report"].failures
    rows = [json.loads(line) for line in Path("on-ray/batch.jsonl").read_text().splitlines()]
    assert all(row["status"] == "done" and f"pid {os.getpid()}" not in row["worker"] for row in rows)  # elsewhere


#: What each Python block says it produces, found by a line it has.
PRODUCES = {
    'result.save("out.png")': saved_a_png,
    'preset="tutorial"': saved_with_settings,
    "LivePreview(": made_the_preview,
    "nst.run.live.start(": steered,
    'save_animation("run.gif"': animated,
    "stylize_video(": made_a_video,
    "stylize_many(": ran_every_job,
    'masks=["sky.png", "town.png"]': styled_two_regions,
    'nst.batch(jobs, "styled"': wrote_a_folder,
    'cluster="local"': ran_on_ray,
}


@pytest.mark.parametrize("page, code", PYTHON, ids=[f"{page.name}-python-{i}" for i, (page, _) in enumerate(PYTHON)])
def test_python_block_runs_as_written(page, code, page_folder, capsys):
    checks = [check for line, check in PRODUCES.items() if line in code]
    assert checks, f"a block of {page.name} with nothing here to check what it produces: add it to PRODUCES"
    ns = {"__name__": "docs"}
    exec(compile(code, f"{page.name} (a python block)", "exec"), ns)
    printed = capsys.readouterr().out
    for check in checks:
        check(ns, printed)


def shell_lines(page: Path) -> list[list[str]]:
    """Each line of ``page``'s shell blocks as words (continuations joined, comments dropped)."""
    return [
        shlex.split(line, comments=True)
        for kind, code in FENCE.findall(page.read_text())
        if kind == "bash"
        for line in code.replace("\\\n", " ").splitlines()
        if shlex.split(line, comments=True)
    ]


SETUP = {"pip", "source", "export", "ray"}
SHELL_PAGES = [page for page in PAGES if shell_lines(page)]


def test_every_shell_line_is_a_command_this_test_knows():
    for page in SHELL_PAGES:
        for words in shell_lines(page):
            assert words[0] in {"nst", "python", "make", *SETUP}, f"{page.name}: {' '.join(words)}"


def output_of(argv: list[str]) -> str | None:
    for flag in ("-o", "--out"):
        if flag in argv:
            return argv[argv.index(flag) + 1]
    return None


@pytest.mark.parametrize("page", SHELL_PAGES, ids=lambda p: p.name)
def test_shell_blocks_run_as_written(page, page_folder, monkeypatch, capsys):
    """Each ``nst`` command of the page, in order, as the shell would run it (cut as the module says)."""
    if not EIGHT_BIT.is_file():
        pytest.skip(f"needs {EIGHT_BIT}: offline, the commands' default weights are that file")
    monkeypatch.setenv("NST_VGG19_WEIGHTS", str(EIGHT_BIT))  # what `nst weights install` gives a machine
    monkeypatch.setenv("NST_CACHE", str(page_folder.parent / "cache"))
    makefile = (ROOT / "Makefile").read_text()
    for words in shell_lines(page):
        if words[0] == "make":
            assert re.search(rf"^{re.escape(words[1])}:", makefile, re.M), f"no make target {words[1]}"
            continue
        if words[0] in SETUP:
            continue
        argv = words[3:] if words[0] == "python" else words[1:]
        if argv == ["--help"]:
            with pytest.raises(SystemExit) as done:
                cli.main(argv)
            assert done.value.code == 0 and "usage: nst" in capsys.readouterr().out
            continue
        if "--cluster" in argv:  # a cluster of this machine's own, for this command
            argv[argv.index("--cluster") + 1] = "local"
        if argv[:2] == ["weights", "install"]:  # into the test's own cache, from the real file where it is
            argv = [*argv[:2], str((page_folder / argv[2]).resolve())] + argv[3:]
        code = cli.main(argv)
        assert code == 0, f"{page.name}: {' '.join(words)}: {capsys.readouterr().err}"
        out = output_of(argv)
        if out and "--sweep" in argv and argv[0] != "batch":  # one PNG per run, named for its values
            assert list(Path(out).parent.glob(f"{Path(out).stem}-*.png")), " ".join(words)
        elif out:
            assert os.path.exists(out) and (Path(out).is_file() or any(Path(out).iterdir())), " ".join(words)


def test_the_api_reference_lists_every_public_name():
    reference = (ROOT / "docs" / "reference.md").read_text()
    for name in nst.__all__:
        value = getattr(nst, name)
        module = getattr(value, "__module__", None) if callable(value) else None
        where = f"{module}.{name}" if module and module.startswith("nst.") else f"{_home(name)}.{name}"
        assert f"::: {where}\n" in reference, f"nst.{name}: add '::: {where}' to docs/reference.md"


def _home(name: str) -> str:
    """The module that defines a public constant of nst."""
    return "nst.base.presets" if name == "PRESETS" else "nst"


def test_the_readme_links_to_every_page():
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "index.md":  # the site's home page is the README itself
            assert f"(docs/{page.name}" in readme, f"README.md does not link to docs/{page.name}"


def test_the_sites_links_to_the_repository_agree_with_nst_repository():
    """`make repository` rewrites these; a page that names another repository was missed."""
    for path in [ROOT / "mkdocs.yml", *PAGES]:
        for repository in re.findall(r"github\.com/([\w.-]+/[\w.-]+?)(?:/|\"|\)|$)", path.read_text(), re.M):
            assert repository == nst.REPOSITORY, f"{path.name} names github.com/{repository}"
