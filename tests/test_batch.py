"""`nst batch` and `nst.batch`: many pictures into a folder, resumable,
failures recorded, nothing run twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import BLOCK13_LAYERS
from PIL import Image

import nst
from nst.base.config import ConfigError
from nst.io.images import ImageError, load_image, read_metadata, sample_path
from nst.modes.batch import GROUP, groups, name_of, plan
from nst.ui import cli

TINY = {"size": 32, "steps": 3, "weights": "random", "seed": 0, **BLOCK13_LAYERS}
FLAGS = ["--size", "32", "--steps", "3", "--weights", "random", "--seed", "0", "--preset", "blocks1-3", "--quiet"]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """photos/a.jpg, photos/b.jpg (4:3, and 3:4: another output shape), photos/broken.jpg, s1.jpg, s2.jpg."""
    (tmp_path / "photos").mkdir()
    for name, sample, size in [
        ("photos/a.jpg", "tubingen", (64, 48)),
        ("photos/b.jpg", "the_scream", (48, 64)),
        ("s1.jpg", "starry_night", (64, 48)),
        ("s2.jpg", "the_scream", (64, 48)),
    ]:
        with Image.open(sample_path(sample)) as im:
            im.convert("RGB").resize(size).save(tmp_path / name)
    (tmp_path / "photos" / "broken.jpg").write_bytes(b"not an image")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def statuses(out) -> dict[str, tuple[str, str | None]]:
    rows = [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]
    return {row["name"]: (row["status"], row["reason"]) for row in rows}


def test_names_say_content_style_and_sweep_values(folder):
    jobs = nst.grid(["photos/a.jpg"], ["s1.jpg", ["s1.jpg", "s2.jpg"]], style_weight=[1e3], pooling=["avg"])
    assert [name_of(j) for j in jobs] == [
        "a--s1--style-weight-1000--pooling-avg",
        "a--s1+s2--style-weight-1000--pooling-avg",
    ]


def test_two_jobs_that_would_write_one_file_are_refused_before_anything_runs(folder):
    (folder / "other").mkdir()
    (folder / "other" / "a.jpg").write_bytes((folder / "photos" / "a.jpg").read_bytes())
    with pytest.raises(ImageError, match="two jobs would write it"):
        plan(nst.grid(["photos/a.jpg", "other/a.jpg"], ["s1.jpg"]), folder / "out", **TINY)


def test_jobs_group_by_output_shape_at_most_a_group_each(folder):
    jobs = nst.grid(["photos/a.jpg", "photos/b.jpg"], ["s1.jpg"], seed=list(range(GROUP + 1)))
    planned = plan(jobs, folder / "out", **TINY)
    shapes = [{p.shape for p in group} for group in groups(planned)]
    assert shapes == [{(24, 32)}, {(24, 32)}, {(32, 24)}, {(32, 24)}]
    assert [len(g) for g in groups(planned)] == [GROUP, 1, GROUP, 1]


def test_a_batch_writes_every_job_records_failures_and_goes_on(folder, capsys):
    code = cli.main(
        ["batch", "photos/", "--styles", "s1.jpg", "s2.jpg", "-o", "out", "--sweep", "style-weight=1e3,1e4", *FLAGS]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "4 of 12 jobs failed" in err and "photos/broken.jpg" in err and "out/batch.jsonl" in err
    status = statuses(folder / "out")
    assert len(status) == 12
    for name, (state, reason) in status.items():
        if name.startswith("broken"):
            assert state == "failed" and "photos/broken.jpg" in reason
        else:
            assert state == "done" and reason is None
            meta = read_metadata(folder / "out" / f"{name}.png")
            assert meta["batch"]["name"] == name and meta["stopped"] is None
            assert meta["settings"]["style_weight"] == float(name.rsplit("-", 1)[1])
    assert load_image(folder / "out" / "b--s2--style-weight-1000.png").shape == (32, 24, 3)


def test_running_it_again_skips_what_is_done_without_tensorflow(folder):
    argv = ["batch", "photos/a.jpg", "photos/b.jpg", "--styles", "s1.jpg", "-o", "out", *FLAGS]
    assert cli.main(argv) == 0
    written = {p: p.stat().st_mtime_ns for p in (folder / "out").glob("*.png")}
    code = f"import sys; from nst.ui import cli; code = cli.main({argv!r}); print(code, 'tensorflow' in sys.modules)"
    again = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert again.stdout.split()[-2:] == ["0", "False"], again.stderr
    assert "all 2 jobs are done" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (folder / "out").glob("*.png")} == written
    # A changed input (its bytes, not its name) runs its jobs again; the others stay.
    with Image.open(folder / "s1.jpg") as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "s1.jpg")
    report = nst.batch(nst.grid(["photos/a.jpg", "photos/b.jpg"], ["s1.jpg", "s2.jpg"]), "out", **TINY)
    assert sorted(report.results) == ["a--s1", "a--s2", "b--s1", "b--s2"] and report.skipped == []
    again = nst.batch(nst.grid(["photos/a.jpg"], ["s1.jpg", "s2.jpg"]), "out", **TINY)
    assert not again.results and again.skipped == ["a--s1", "a--s2"]


def test_a_batch_gives_the_images_of_single_runs(folder):
    report = nst.batch(nst.grid(["photos/a.jpg"], ["s1.jpg", "s2.jpg"]), "out", **TINY)
    for style in ("s1", "s2"):
        alone = nst.stylize("photos/a.jpg", f"{style}.jpg", **TINY).best_image
        written = load_image(folder / "out" / f"a--{style}.png")
        assert np.abs(written - alone).max() <= 1 / 255 + 1e-6
        assert report.results[f"a--{style}"].best_image.shape == alone.shape


def test_ctrl_c_keeps_the_finished_outputs_and_the_rest_stay_pending(folder):
    jobs = nst.grid(["photos/a.jpg", "photos/b.jpg"], ["s1.jpg"])  # two shapes: two groups

    def interrupt(name, progress):
        if name.startswith("b") and progress.step >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nst.batch(jobs, "out", callback=interrupt, **TINY)
    assert statuses(folder / "out") == {"a--s1": ("done", None), "b--s1": ("pending", "interrupted")}
    assert read_metadata(folder / "out" / "b--s1.png")["stopped"] == "interrupted"  # its best so far, as a run's
    report = nst.batch(jobs, "out", **TINY)
    assert list(report.results) == ["b--s1"] and report.skipped == ["a--s1"]
    assert statuses(folder / "out")["b--s1"] == ("done", None)


def test_ctrl_c_while_the_last_output_is_written_finishes_it_then_stops(folder, monkeypatch):
    """The interrupt waits for the PNG being written, and is not lost when
    no group is left to run: the batch still ends in KeyboardInterrupt."""
    from nst.modes.batch import Batch

    real, signals = Batch.keep, []

    def keep(self, item, result):
        real(self, item, result)
        if not signals:  # Ctrl-C just as the first write ends: it is written again, whole
            signals.append(item.name)
            raise KeyboardInterrupt

    monkeypatch.setattr(Batch, "keep", keep)
    with pytest.raises(KeyboardInterrupt):
        nst.batch(nst.grid(["photos/a.jpg"], ["s1.jpg"]), "out", **TINY)
    assert signals == ["a--s1"] and statuses(folder / "out") == {"a--s1": ("done", None)}
    load_image(folder / "out" / "a--s1.png", 32)


def test_contents_that_name_nothing_are_refused(folder):
    (folder / "empty").mkdir()
    for given, message in [("empty", "a folder without images"), ("photos/*.png", "no file matches")]:
        with pytest.raises(ConfigError, match=message):
            cli.many(cli.batch_parser().parse_args([given, "--styles", "s1.jpg", "-o", "out"]), None, None)


def test_what_a_killed_batch_left_half_written_is_cleared_and_nothing_else(folder):
    jobs = nst.grid(["photos/a.jpg"], ["s1.jpg"])
    nst.batch(jobs, "out", **TINY)
    dead = folder / "out" / ".a--s1.png.4194305.0123abcd.tmp"  # above Linux's largest pid: no such process
    alive = folder / "out" / f".a--s1.png.{os.getpid()}.4567cdef.tmp"  # a batch writing now
    for path in (dead, alive):
        path.write_bytes(b"half a PNG")
    assert nst.batch(jobs, "out", **TINY).skipped == ["a--s1"]
    assert not dead.exists() and alive.exists()
