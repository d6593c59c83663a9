"""Jobs per hour: one `nst batch` command (one process, engines kept warm,
jobs of a shape as one batch) against one `nst` command per job (the
baseline: what a shell loop does), on the same jobs, in the same run.

    NST_IMAGES=../shared/images python benchmarks/batch.py              # 2 photos x 3 styles, 256 px, 100 steps

Random weights: the arithmetic, and so the time, does not depend on them.
Prints the wall time of each arm from the shell and jobs per hour.
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=os.environ.get("NST_IMAGES", "../shared/images"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    images = Path(args.images)
    common = ["--size", str(args.size), "--steps", str(args.steps), "--weights", "random", "--seed", "0",
              "--quiet", "--no-xla", "--precision", "float32", "--pooling-op", "keras"]  # fmt: skip
    nst = [sys.executable, "-m", "nst"]
    jobs = [(p, s) for p in PHOTOS for s in STYLES]
    print(f"CPU: {cpu_name()}; {len(jobs)} jobs, {args.size} px, {args.steps} steps, random weights, one path "
          "(float32, TensorFlow kernels, Keras pooling) for both", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        one_by_one = sum(timed([*nst, str(images / p), str(images / s), "-o", f"{out}/{i}.png", *common])
                         for i, (p, s) in enumerate(jobs))  # fmt: skip
        batch = timed([*nst, "batch", *(str(images / p) for p in PHOTOS), "--styles",
                       *(str(images / s) for s in STYLES), "-o", f"{out}/batch", *common])  # fmt: skip
        again = timed([*nst, "batch", *(str(images / p) for p in PHOTOS), "--styles",
                       *(str(images / s) for s in STYLES), "-o", f"{out}/batch", *common])  # fmt: skip
    print("| arm | wall time | jobs per hour |\n| --- | --- | --- |")
    print(f"| one `nst` command per job (baseline) | {one_by_one:.1f} s | {3600 * len(jobs) / one_by_one:.0f} |")
    print(f"| one `nst batch` command | {batch:.1f} s ({batch / one_by_one:.2f}x) | {3600 * len(jobs) / batch:.0f} |")
    print(f"| the same `nst batch` again (all done) | {again:.2f} s | |")


if __name__ == "__main__":
    main()
