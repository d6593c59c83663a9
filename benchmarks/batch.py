"""Jobs per hour: one `nst batch` command (one process, engines kept warm,
jobs of a shape as one batch) against one `nst` command per job (the
baseline: what a shell loop does), on the same jobs, in the same run; and
the Ray path's overhead against the local batch (``--ray``): the same
command with ``--cluster local`` (Ray started by the command) and with the
address of a Ray cluster already running here (``ray start --head``, as a
group's cluster runs), each worker with all the machine's CPUs.

    python benchmarks/batch.py          # 2 photos x 3 styles, 256 px, 100 steps
    python benchmarks/batch.py --ray    # local batch, --cluster local, --cluster HOST:PORT

Random weights: the arithmetic, and so the time, does not depend on them.
Prints the wall time of each arm from the shell and jobs per hour.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recipe_sizes import cpu_name

PHOTOS = ("tubingen.jpg", "shipwreck.jpg")
STYLES = ("starry_night.jpg", "the_scream.jpg", "woman-with-hat-matisse.jpg")


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def ray_overhead(batch: list[str], out: str, jobs: int) -> None:
    """The local batch, then the same batch on Ray: started by the command, and already running."""
    ray = str(Path(sys.executable).parent / "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    local = timed([*batch, "-o", f"{out}/local"])
    started = timed([*batch, "-o", f"{out}/ray-local", "--cluster", "local"])
    temp = tempfile.mkdtemp(prefix="nst-bench-ray-", dir="/tmp")
    mark = f"NST_BENCHMARK_CLUSTER={Path(temp).name}"
    env = {**os.environ, **dict([mark.split("=")])}
    subprocess.run(
        [
            ray,
            "start",
            "--head",
            f"--port={port}",
            f"--temp-dir={temp}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    try:
        running = timed([*batch, "-o", f"{out}/ray-running", "--cluster", f"127.0.0.1:{port}"])
    finally:  # its processes only (`ray stop` would end every Ray cluster here)
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if mark.encode() in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), 9)
            except (OSError, ValueError):
                pass
        shutil.rmtree(temp, ignore_errors=True)
    print("| arm | wall time | per job | overhead per job |\n| --- | --- | --- | --- |")
    print(f"| local `nst batch` (baseline) | {local:.1f} s | {local / jobs:.1f} s | |")
    for name, wall in [
        ("`--cluster local` (Ray started by the command)", started),
        ("`--cluster HOST:PORT` (a Ray cluster already running)", running),
    ]:
        extra = (wall - local) / jobs
        share = 100 * extra / (local / jobs)
        print(f"| {name} | {wall:.1f} s | {wall / jobs:.1f} s | {extra:+.1f} s ({share:+.1f}%) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=os.environ.get("NST_IMAGES", "../shared/images"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--ray", action="store_true", help="the Ray path's overhead against the local batch")
    args = parser.parse_args()
    images = Path(args.images)
    common = [
        "--size",
        str(args.size),
        "--steps",
        str(args.steps),
        "--weights",
        "random",
        "--seed",
        "0",
        "--quiet",
        "--no-xla",
        "--precision",
        "float32",
        "--pooling-op",
        "keras",
    ]
    nst = [sys.executable, "-m", "nst"]
    jobs = [(p, s) for p in PHOTOS for s in STYLES]
    print(
        f"CPU: {cpu_name()}; {len(jobs)} jobs, {args.size} px, {args.steps} steps, random weights, one path "
        "(float32, TensorFlow kernels, Keras pooling) for both",
        flush=True,
    )
    batch = [*nst, "batch", *(str(images / p) for p in PHOTOS), "--styles", *(str(images / s) for s in STYLES), *common]
    if args.ray:
        with tempfile.TemporaryDirectory() as out:
            ray_overhead(batch, out, len(jobs))
        return
    with tempfile.TemporaryDirectory() as out:
        one_by_one = sum(
            timed([*nst, str(images / p), str(images / s), "-o", f"{out}/{i}.png", *common])
            for i, (p, s) in enumerate(jobs)
        )
        once = timed([*batch, "-o", f"{out}/batch"])
        again = timed([*batch, "-o", f"{out}/batch"])
    print("| arm | wall time | jobs per hour |\n| --- | --- | --- |")
    print(f"| one `nst` command per job (baseline) | {one_by_one:.1f} s | {3600 * len(jobs) / one_by_one:.0f} |")
    print(f"| one `nst batch` command | {once:.1f} s ({once / one_by_one:.2f}x) | {3600 * len(jobs) / once:.0f} |")
    print(f"| the same `nst batch` again (all done) | {again:.2f} s | |")


if __name__ == "__main__":
    main()
