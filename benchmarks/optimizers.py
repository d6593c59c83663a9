"""Adam vs L-BFGS vs coarse to fine on the report's objective.

Each method optimises the same objective at the same output size; the table
gives the objective at the output size after the given numbers of full-size
steps (Adam updates or L-BFGS function evaluations) and the wall time, with
ratios against plain Adam measured in the same run.

    python benchmarks/optimizers.py --weights ../shared/weights/vgg19_imagenet_block1_to_block3.npz

With the partial block 1-3 weights use the default ``--preset blocks1-3``.
"""

from __future__ import annotations

import argparse
import os
import sys

import nst


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--content", default="sample:tubingen")
    parser.add_argument("--style", default="sample:starry_night")
    parser.add_argument("--preset", default="blocks1-3")
    parser.add_argument("--weights", default=os.environ.get("NST_VGG19_WEIGHTS"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200, help="full-size steps per method")
    args = parser.parse_args(argv)

    half = args.size // 2
    methods = {
        "adam": {},
        "lbfgs": {"optimizer": "lbfgs"},
        f"adam, {half}->{args.size}": {"scales": (half, args.size)},
        f"lbfgs, {half}->{args.size}": {"optimizer": "lbfgs", "scales": (half, args.size)},
    }
    checkpoints = sorted({args.steps // 4, args.steps // 2, args.steps})
    common = {"preset": args.preset, "weights": args.weights, "size": args.size, "steps": args.steps, "seed": 0}
    runs = {}
    for name, settings in methods.items():
        result = nst.stylize(args.content, args.style, **common, **settings)
        h = result.history
        # The objective and the time at the output size, indexed by full-size steps done.
        full = [(t, s) for t, s, size in zip(h["total"], h["time"], h["size"]) if size == args.size]
        runs[name] = ([t for t, _ in full], [s for _, s in full], result.timings)
        print(f"# {name}: done in {result.timings['total']:.1f} s", file=sys.stderr)

    base = runs["adam"]
    target = min(base[0])  # Adam's best objective after all its steps
    print(
        f"{args.size} px, preset {args.preset}, {args.content} in the style of {args.style}. Best objective "
        f"after k full-size steps (ratio to Adam's); full-size steps and seconds (from the first step, "
        f"compilation included) until Adam's final best {target:.3g} is reached; wall time of the whole run.\n"
    )
    print("| method | start | " + " | ".join(f"k={k}" for k in checkpoints) + " | to Adam's best | run s | s/step |")
    print("|---" * (len(checkpoints) + 5) + "|")
    for name, (totals, times, timings) in runs.items():
        best = [min(totals[: k + 1]) for k in checkpoints]
        cells = [f"{v:.3g} ({v / min(base[0][: k + 1]):.2f})" for v, k in zip(best, checkpoints)]
        reach = next((k for k in range(len(totals)) if totals[k] <= target), None)
        reached = f"{reach} steps, {times[reach]:.1f} s" if reach is not None else "not reached"
        print(
            f"| {name} | {totals[0]:.3g} | "
            + " | ".join(cells)
            + f" | {reached} | {timings['total']:.1f} | {timings['step']:.3f} |"
        )


if __name__ == "__main__":
    main()
