"""Repeated calls: what a loop of `nst.stylize` calls of one shape costs, in
one process, against the same loop on another revision measured in the
same run (git worktree).

For each mode (Adam, L-BFGS, tiled, float16) and each tree, a fresh process
makes CALLS calls (64 px, 3 steps, the exact block 1-3 weights) and reports
each call's seconds and the process's memory mappings after it (XLA keeps
a compiled program's 12-27 mappings for the life of the process; the
kernel allows 65,530). Then, per tree, a 512 px run of the report preset
(the paper's layers, 8-bit weights): its median seconds per step. Prints a
Markdown table with the ratios this tree / the other.

    python benchmarks/repeat.py --against a16e7c6 [--calls 40] [--modes adam lbfgs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODES = {"adam": {}, "lbfgs": {"optimizer": "lbfgs"}, "tiled": {"tile": 32}, "float16": {"precision": "mixed_float16"}}

# Run in a fresh process with the tree to measure first on sys.path.
LOOP = """
import json, sys, time
import nst
settings = json.loads(sys.argv[1])
calls = int(sys.argv[2])
rows = []
for _ in range(calls):
    t0 = time.perf_counter()
    nst.stylize(sys.argv[3], sys.argv[4], **settings)
    with open("/proc/self/maps") as maps:
        rows.append((time.perf_counter() - t0, sum(1 for _ in maps)))
print(json.dumps({"file": nst.__file__, "rows": rows}))
"""
STEP = """
import json, sys
import nst
result = nst.stylize(sys.argv[3], sys.argv[4], **json.loads(sys.argv[1]))
print(json.dumps({"file": nst.__file__, "step": result.timings["step"]}))
"""


def measure(tree: Path, code: str, settings: dict, calls: int = 1) -> dict:
    """``code`` in a fresh process that imports nst from ``tree``."""
    images = SHARED / "images"
    env = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore",
            "-c",
            code,
            json.dumps(settings),
            str(calls),
            str(images / "tubingen.jpg"),
            str(images / "starry_night.jpg"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tree,
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(tree), out["file"]  # the tree asked for, not an installed nst
    return out


def cpu() -> str:
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
        name = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Model name"))
        flags = next(line for line in lines if line.startswith("Flags"))
        return f"{name}, {os.cpu_count()} cores, AVX-512 {'yes' if 'avx512f' in flags else 'no'}"
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the git revision to compare with (e.g. a16e7c6)")
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--no-step", action="store_true", help="skip the 512 px step")
    args = parser.parse_args()
    small = {
        "size": 64,
        "steps": 3,
        "weights": str(SHARED / "weights" / "vgg19_imagenet_block1_to_block3.npz"),
        "style_layers": ["block1_conv1", "block2_conv1", "block3_conv1"],
        "content_layers": ["block3_conv2"],
    }
    with tempfile.TemporaryDirectory() as folder:
        other = Path(folder) / "other"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.against],
            check=True,
            capture_output=True,
        )
        try:
            trees = {"this tree": ROOT, args.against: other}
            print(f"{cpu()}; {args.calls} calls of 64 px, 3 steps, blocks 1-3 weights, each mode in a fresh process\n")
            print("| mode | tree | first call s | median later call s | mappings after call 2 | more per later call |")
            print("| --- | --- | --- | --- | --- | --- |")
            later = {}
            for mode in args.modes:
                for name, tree in trees.items():
                    rows = measure(tree, LOOP, {**small, **MODES[mode]}, args.calls)["rows"]
                    seconds, maps = zip(*rows)
                    later[mode, name] = statistics.median(seconds[2:])
                    growth = (maps[-1] - maps[1]) / (len(maps) - 2)
                    print(
                        f"| {mode} | {name} | {seconds[0]:.2f} | {later[mode, name]:.3f} | {maps[1]} | {growth:.1f} |"
                    )
            for mode in args.modes:
                print(
                    f"\n{mode}: a later call takes {later[mode, 'this tree'] / later[mode, args.against]:.2f}x "
                    f"the time it takes on {args.against}"
                )
            if not args.no_step:
                eightbit = SHARED / "weights" / "vgg19_imagenet_8bit.npz"
                settings = {"size": 512, "steps": 12, "preset": "report", "weights": str(eightbit)}
                steps = {name: [] for name in trees}
                for _ in range(2):  # interleaved: A B A B
                    for name, tree in trees.items():
                        steps[name].append(measure(tree, STEP, settings)["step"])
                mine, theirs = (statistics.median(steps[name]) for name in trees)
                print(
                    f"\n512 px, report preset, 8-bit weights, median s/step of 2 runs each: this tree {mine:.3f} "
                    f"({steps['this tree']}), {args.against} {theirs:.3f} ({steps[args.against]}): "
                    f"{mine / theirs:.2f}x"
                )
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], capture_output=True)


if __name__ == "__main__":
    main()
