"""`nst batch --cluster` and `nst.batch(cluster=)`: the jobs on a real Ray
cluster that each test starts itself (``ray.init`` in this process, and
``ray start --head`` plus a second node as processes of their own): the
same PNGs as a local batch, a worker killed with SIGKILL mid-job replaced,
a killed driver that goes on when run again, and a missing Ray named."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import BLOCK13_LAYERS, BLOCK13_WEIGHTS
from PIL import Image

import nst
from nst.base.config import ConfigError
from nst.io.images import load_image, read_metadata, sample_path
from nst.ui import cli

if os.environ.get("CI"):  # in CI nothing may be skipped: Ray is in requirements-dev.txt
    import ray
else:
    ray = pytest.importorskip("ray")

TINY = {"size": 64, "steps": 5, "weights": "random", "seed": 0, **BLOCK13_LAYERS}
FLAGS = ["--size", "64", "--weights", "random", "--seed", "0", "--preset", "blocks1-3", "--quiet"]
NAMES = [f"{c}--{s}" for c in "ab" for s in ("s1", "s2", "s3")]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """photos/a.jpg (4:3) and photos/b.jpg (3:4: another shape, another group); s1.jpg, s2.jpg, s3.jpg."""
    (tmp_path / "photos").mkdir()
    for name, sample, size in [
        ("photos/a.jpg", "tubingen", (64, 48)),
        ("photos/b.jpg", "the_scream", (48, 64)),
        ("s1.jpg", "starry_night", (64, 48)),
        ("s2.jpg", "the_scream", (64, 48)),
        ("s3.jpg", "tubingen", (48, 48)),
    ]:
        with Image.open(sample_path(sample)) as im:
            im.convert("RGB").resize(size).save(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows(out: Path) -> dict[str, dict]:
    return {row["name"]: row for row in map(json.loads, (out / "batch.jsonl").read_text().splitlines())}


def test_a_missing_ray_is_named_with_its_pip_command_before_anything_runs(folder, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # the default of --cluster
    assert cli.main(["batch", "photos/a.jpg", "--styles", "s1.jpg", "-o", "out", *FLAGS]) == 2
    assert "pip install 'nst[ray]'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=re.escape("pip install 'nst[ray]'")):
        nst.batch(nst.grid(["photos/a.jpg"], ["s1.jpg"]), "out", cluster="auto", **TINY)
    assert not (folder / "out").exists()


def test_a_local_ray_cluster_writes_the_pngs_of_the_local_batch(folder):
    Image.new("RGB", (64, 64)).save(folder / "c.jpg")  # a shape of its own: a group of its own
    Image.new("L", (48, 64)).save(folder / "tall.png")  # not c.jpg's shape: that group fails on the worker
    jobs = [
        *nst.grid(["photos/a.jpg", "photos/b.jpg"], ["s1.jpg", "s2.jpg", "s3.jpg"]),
        nst.Job("c.jpg", "s1.jpg", masks=["tall.png"]),
    ]
    # A weights file, where there is one, travels as bytes too; the records must still name it as given here.
    tiny = {**TINY, "weights": str(BLOCK13_WEIGHTS) if BLOCK13_WEIGHTS.is_file() else "random"}
    here = nst.batch(jobs, "here", **tiny)
    there = nst.batch(jobs, "there", cluster="local", **tiny)
    assert not ray.is_initialized()  # the Ray it started is shut down
    assert sorted(there.results) == sorted(here.results) == NAMES
    # The group that raised failed as it does here, its reason naming the mask as given, not the worker's copy.
    assert there.failures == here.failures and "mask 1 tall.png: it is 48 x 64" in there.failures["c--s1"]
    for name in NAMES:
        ours, theirs = read_metadata(f"here/{name}.png"), read_metadata(f"there/{name}.png")
        # Named as on the driver (not the worker's copies of the inputs), with the same settings and key.
        for field in ("content", "styles", "settings", "batch", "stopped", "steps_done"):
            assert theirs[field] == ours[field], field
        assert theirs["best_loss"] == pytest.approx(ours["best_loss"], rel=1e-4)
        # Equal here (the worker has this machine's threads); a reduction in another order may round a pixel.
        assert np.abs(load_image(f"there/{name}.png") - load_image(f"here/{name}.png")).max() <= 2 / 255 + 1e-6
    assert {row["attempts"] for row in rows(folder / "there").values()} == {1}
    here_pid = f"pid {os.getpid()}"  # the local batch's rows name this process; the cluster's, its workers
    assert all(row["worker"].endswith(here_pid) for row in rows(folder / "here").values())
    assert all(
        re.search(r"pid \d+$", row["worker"]) and not row["worker"].endswith(here_pid)
        for row in rows(folder / "there").values()
    )
    again = nst.batch(jobs, "there", cluster="local", **tiny)
    assert not again.results and sorted(again.skipped) == NAMES and not ray.is_initialized()
    assert again.failures == here.failures  # and the failed one fails again


@pytest.fixture(scope="module")
def two_nodes():
    """A Ray cluster of two nodes of one CPU each, started as separate
    processes (``ray start --head``, ``ray start --address``); its address
    and the environment to reach it. Stopped by ending exactly its processes
    (``ray stop`` would end every Ray cluster on the machine)."""
    temp = Path(tempfile.mkdtemp(prefix="nst-ray-", dir="/tmp"))  # Ray's socket paths must stay short
    ports = []
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    mark = f"NST_TEST_CLUSTER={temp.name}"
    env = {**os.environ, **dict([mark.split("=")])}
    ray_cli = str(Path(sys.executable).parent / "ray")
    common = ["--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats"]
    head = [
        ray_cli,
        "start",
        "--head",
        f"--port={ports[0]}",
        f"--ray-client-server-port={ports[1]}",
        f"--dashboard-port={ports[2]}",
        "--include-dashboard=false",
        *common,
    ]
    try:
        for command in (head, [ray_cli, "start", f"--address=127.0.0.1:{ports[0]}", *common]):
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert started.returncode == 0, started.stderr[-2000:]
        yield f"127.0.0.1:{ports[0]}", env
    finally:  # its processes, and only its, carry its mark
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if mark.encode() in (proc / "environ").read_bytes().split(b"\0") and int(proc.name) != os.getpid():
                    os.kill(int(proc.name), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        shutil.rmtree(temp, ignore_errors=True)


def nst_batch(address: str, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nst",
        "batch",
        "photos/",
        "--styles",
        "s1.jpg",
        "s2.jpg",
        "s3.jpg",
        "-o",
        "out",
        "--cluster",
        address,
        "--worker-cpus",
        "1",
        *FLAGS,
        *more,
    ]


def wait_for_row(out: Path, status: str, process: subprocess.Popen, limit: float = 180.0) -> dict:
    """The first job in ``out/batch.jsonl`` with ``status``, once there is one."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        assert process.poll() is None, process.communicate()[1][-2000:]
        try:
            found = [row for row in rows(out).values() if row["status"] == status]
        except (OSError, ValueError):  # not written yet
            found = []
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no job was {status} after {limit:.0f} s")


def complete(out: Path, names: list[str]) -> None:
    """Every output there once, whole, finished, with its key; nothing else but the log."""
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in names] + ["batch.jsonl"])
    for name in names:
        meta = read_metadata(out / f"{name}.png")
        assert meta["stopped"] is None and meta["batch"]["name"] == name and len(meta["batch"]["key"]) == 64
        assert load_image(out / f"{name}.png").shape == ((48, 64, 3) if name.startswith("a") else (64, 48, 3))
    assert {row["status"] for row in rows(out).values()} == {"done"}


def test_a_worker_killed_mid_job_is_replaced_and_every_output_is_written_once(folder, two_nodes):
    address, env = two_nodes
    batch = subprocess.Popen(
        nst_batch(address, "--steps", "300"), env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    running = wait_for_row(folder / "out", "running", batch)
    pid = int(re.search(r"pid (\d+)$", running["worker"]).group(1))
    os.kill(pid, signal.SIGKILL)
    out, err = batch.communicate(timeout=600)
    assert batch.returncode == 0, err[-2000:]
    assert "6 written" in out
    complete(folder / "out", NAMES)
    killed = [row for row in rows(folder / "out").values() if row["attempts"] == 2]
    assert killed and all(f"pid {pid}" not in row["worker"] for row in killed)  # its group ran again, elsewhere
    again = subprocess.run(nst_batch(address, "--steps", "300"), env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "all 6 jobs are done" in again.stdout, again.stderr[-2000:]


def test_a_driver_killed_mid_batch_goes_on_when_run_again(folder, two_nodes):
    address, env = two_nodes
    command = nst_batch(address, "--steps", "100", "--sweep", "seed=0,1")  # 12 jobs: 4 groups for 2 workers
    batch = subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_row(folder / "out", "done", batch)
    batch.kill()  # SIGKILL: nothing of the driver's runs after this
    batch.communicate()
    # What the killed command finished: a PNG that ran to its end (it may have died before its log line).
    left = [
        name
        for name in rows(folder / "out")
        if not (folder / "out" / f"{name}.png").is_file()
        or read_metadata(folder / "out" / f"{name}.png")["stopped"] is not None
    ]
    assert left, "the batch ended before it was killed"
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(left)} written, {12 - len(left)} already done" in again.stdout
    complete(folder / "out", [f"{n}--seed-{seed}" for n in NAMES for seed in (0, 1)])


def test_ctrl_c_ends_the_running_groups_as_runs_end_and_keeps_what_is_done(folder, two_nodes):
    address, env = two_nodes
    command = nst_batch(address, "--steps", "2000", "--sweep", "seed=0,1")  # 4 groups for 2 workers: some wait
    batch = subprocess.Popen(
        command,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As from a terminal: a suite started in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    running = wait_for_row(folder / "out", "running", batch)
    time.sleep(3)  # into the steps
    batch.send_signal(signal.SIGINT)
    out, err = batch.communicate(timeout=120)
    assert batch.returncode == 130, err[-2000:]
    assert "interrupted; kept" in err or "nothing was written" in err
    states = rows(folder / "out")
    assert {row["status"] for row in states.values()} <= {"done", "pending"}  # none left 'running'
    interrupted = [name for name, row in states.items() if row["reason"] == "interrupted"]
    assert running["name"] in interrupted  # ended at its next report, its best so far written
    for name in interrupted:
        assert read_metadata(folder / "out" / f"{name}.png")["stopped"] == "interrupted"
