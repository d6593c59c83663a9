"""What a live preview costs per refresh: encoding the image for an
`ipywidgets.Image` (what `nst.ui.preview` does) against redrawing a matplotlib
figure of it (what a plt.imshow preview does), measured in the same run.

    python benchmarks/preview.py --size 512
"""

from __future__ import annotations

import argparse
import io
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from nst.ui.preview import encode


def seconds(fn, repeat: int) -> float:
    fn()  # warm up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(args.size * 3 // 4, args.size, 3)).astype(np.float32)

    def figure() -> None:
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
        ax.imshow(image)
        ax.axis("off")
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)

    base = seconds(figure, args.repeat)
    print(f"{args.size} px image, mean of {args.repeat} refreshes:")
    print(
        f"| method | ms per refresh | speed-up |\n|---|---|---|\n| matplotlib figure (baseline) | {base * 1e3:.1f} | 1.0 |"
    )
    for fmt in ("jpeg", "png"):
        t = seconds(lambda fmt=fmt: encode(image, fmt), args.repeat)
        print(f"| ipywidgets.Image bytes, {fmt} | {t * 1e3:.1f} | {base / t:.1f} |")


if __name__ == "__main__":
    main()
