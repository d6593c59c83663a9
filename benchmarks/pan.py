"""Video edges in a camera pan: how much texture the pixels that come into
view keep, frame after frame (`synthetic.pan`, `synthetic.edge_texture`).

    python benchmarks/pan.py --weights ../shared/weights/vgg19_imagenet_8bit.npz

A 12-frame pan over Tübingen (4 px right and 2 px down a frame), The Starry
Night, the report preset and `nst video`'s defaults at 96 px. Prints, per
frame, the right and bottom edges' texture over the middle's (1: as much;
frame 0 is the still) and the seconds per frame, with the CPU named.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import edge_texture, pan  # noqa: E402

import nst  # noqa: E402
from nst.io.images import load_image, save_image  # noqa: E402


def cpu() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="steps per later frame (default: nst video's)")
    parser.add_argument("--first-frame-steps", type=int, default=200)
    parser.add_argument(
        "--stills",
        action="store_true",
        help="each frame on its own (temporal weight 0, the first frame's steps): the reference",
    )
    parser.add_argument("--keep", help="a folder to keep the frames in")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        clip = Path(scratch) / "clip"
        clip.mkdir()
        for i, frame in enumerate(pan("sample:tubingen", args.frames, args.size)):
            save_image(clip / f"{i:03d}.png", frame)
        out = Path(args.keep or scratch) / "styled"
        extra = {"frame_steps": args.steps} if args.steps else {}
        extra["first_frame_steps"] = args.first_frame_steps
        if args.stills:
            extra.update(temporal_weight=0)
        started = time.perf_counter()
        result = nst.stylize_video(
            clip, "sample:starry_night", out, size=args.size, weights=args.weights, seed=0, **extra
        )
        total = time.perf_counter() - started
        print(
            f"{args.frames}-frame pan at {args.size} px, {nst.__version__}, {cpu()}: {total:.0f} s "
            f"(first frame {result.timings['first_frame']:.1f} s, later {result.timings['frame']:.1f} s each)"
        )
        print("frame  right  bottom")
        for i, path in enumerate(result.frames):
            right, bottom = edge_texture(load_image(path))
            print(f"{i:5d}  {right:5.2f}  {bottom:6.2f}")


if __name__ == "__main__":
    main()
