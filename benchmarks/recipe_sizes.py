"""The scale-free recipe against the report's, on the paper's network
(8-bit weights) and real images, in one run:

- finish: the time to a finished 512 px image with each preset's own
  settings (`report`, `gatys`, `scale-free`), each one `nst` command as a
  user types it, timed from the shell (import, weights, compile, steps,
  saving).
- sizes: the same settings at 256, 512 and 1024 px, for `scale-free` and
  for `report`; each output is brought to 256 px (the same scale relative
  to the picture) and measured there by two style statistics:

  - stroke frequency: the power-weighted mean spatial frequency of what
    the stylisation added (the output's luminance minus the photo's), in
    cycles per picture width. The same number at every size means strokes
    of the same size relative to the picture.
  - Gram distance: the mean over the paper's five style layers of
    ``mean (G/M - A)^2 / N^2`` (the authors' code's style term, which
    neither preset optimises at this scale) between the output and the
    painting, both at 256 px. Lower: more like the painting at this scale.

  It also writes sizes.png: the outputs side by side, all shown at the same
  width, to look at.

    NST_IMAGES=../shared/images python benchmarks/recipe_sizes.py \\
        --weights ../shared/weights/vgg19_imagenet_8bit.npz --out /tmp/recipe-sizes
    ... --only sizes --sizes-steps 100     # one section

Sizes run with ``--steps`` given (``--sizes-steps``; scale-free takes twice
that at its first scale), the same at every size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONTENT, STYLE = "tubingen.jpg", "starry_night.jpg"
PRESETS = ("report", "gatys", "scale-free")
SIZES = (256, 512, 1024)
COMMON = 256  # the size every output is measured at


def cpu_name() -> str:
    """The CPU's model name and whether it has AVX-512 (what speed figures depend on)."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
        info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        flags = info.get("Flags", "").split()
        return (
            f"{info.get('Model name', platform.processor())}, {os.cpu_count()} cores, "
            f"avx512f {'avx512f' in flags}, avx512_bf16 {'avx512_bf16' in flags}"
        )
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()


def run_nst(images: Path, weights: str, preset: str, size: int, out: Path, *extra: str) -> float:
    """One ``nst`` command; returns its wall seconds as seen from the shell."""
    command = [
        sys.executable,
        "-m",
        "nst",
        str(images / CONTENT),
        str(images / STYLE),
        "-o",
        str(out),
        "--preset",
        preset,
        "--size",
        str(size),
        "--weights",
        weights,
        "--quiet",
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def luminance(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.299, 0.587, 0.114], np.float32)


def stroke_frequency(output: np.ndarray, photo: np.ndarray) -> float:
    """The power-weighted mean frequency of ``output - photo`` (luminance), in cycles per picture width."""
    added = luminance(output) - luminance(photo)
    power = np.abs(np.fft.fft2(added - added.mean())) ** 2
    h, w = added.shape
    # Frequencies in cycles per pixel, times the width in pixels: cycles per picture width on both axes.
    fy, fx = np.meshgrid(np.fft.fftfreq(h) * w, np.fft.fftfreq(w) * w, indexing="ij")
    return float((np.hypot(fx, fy) * power).sum() / power.sum())


def gram_distance(extractor, image: np.ndarray, painting: np.ndarray) -> float:
    """The mean over the style layers of ``mean (G/M - A)^2 / N^2`` between two images."""
    from nst.base.backend import tf
    from nst.core.losses import GATYS

    ours, theirs = (extractor(tf.constant(x[None])).style for x in (image, painting))
    terms = [float(GATYS.style(f, GATYS.style_target(s, 1))[0]) for f, s in zip(ours, theirs)]
    return float(np.mean(terms))


def finish(images: Path, weights: str, out: Path) -> list[dict]:
    rows = []
    for preset in PRESETS:
        png = out / f"finish-{preset}-512.png"
        seconds = run_nst(images, weights, preset, 512, png)
        rows.append({"preset": preset, "seconds": seconds, "png": str(png)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def sizes(
    images: Path,
    weights: str,
    out: Path,
    steps: int,
    presets=("scale-free", "report"),
    sizes_=SIZES,
    reuse: bool = False,
    measure_only: bool = False,
) -> list[dict]:
    from nst.base.config import preset as make_preset
    from nst.core.features import extractor_for
    from nst.io.images import load_image

    runs = []
    for preset in presets:
        for size in sizes_:
            png = out / f"size-{preset}-{size}.png"
            if (reuse or measure_only) and png.is_file():  # made by an earlier run with the same --sizes-steps
                runs.append({"preset": preset, "size": size, "seconds": None, "png": str(png)})
                continue
            if measure_only:
                continue
            seconds = run_nst(images, weights, preset, size, png, "--steps", str(steps))
            runs.append({"preset": preset, "size": size, "seconds": seconds, "png": str(png)})
            print(json.dumps(runs[-1]), flush=True)
    extractor = extractor_for(make_preset("report", weights=weights, size=COMMON))
    photo, painting = load_image(images / CONTENT, COMMON), load_image(images / STYLE, COMMON)
    for run in runs:
        output = load_image(run["png"], COMMON)
        run["stroke_frequency"] = stroke_frequency(output, photo)
        run["gram_distance"] = gram_distance(extractor, output, painting)
    return runs


def sheet(runs: list[dict], out: Path, steps: int | str) -> None:
    """sizes.png: the outputs by preset and size, all shown at one width; ``steps`` as the title says them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nst.io.images import load_image

    presets = sorted({r["preset"] for r in runs}, key=["scale-free", "report"].index)
    columns = max(sum(r["preset"] == p for r in runs) for p in presets)
    figure, axes = plt.subplots(
        len(presets), columns, figsize=(4 * columns, 3.3 * len(presets)), dpi=150, squeeze=False
    )
    for row, preset in zip(axes, presets):
        for ax in row:
            ax.axis("off")  # a row with fewer sizes leaves its last panels empty
        for ax, run in zip(row, (r for r in runs if r["preset"] == preset)):
            ax.imshow(load_image(run["png"]))
            ax.set_title(
                f"{preset}, {run['size']} px\nstrokes {run['stroke_frequency']:.1f} cycles/width, "
                f"Gram {run['gram_distance']:.3g}",
                fontsize=9,
            )
    steps = f"{steps} steps a scale; scale-free: 2x at 128 px" if isinstance(steps, int) else steps
    figure.suptitle(
        f"The same settings at each size, all shown at one width ({steps}; 8-bit weights)", fontsize=10, y=0.995
    )
    figure.subplots_adjust(hspace=0.3)
    figure.tight_layout()
    figure.savefig(out / "sizes.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="the 8-bit VGG19 file (all 16 convolutions)")
    parser.add_argument("--images", default=os.environ.get("NST_IMAGES", "../shared/images"))
    parser.add_argument("--out", default="/tmp/recipe-sizes")
    parser.add_argument("--only", nargs="+", choices=("finish", "sizes"), default=["finish", "sizes"])
    parser.add_argument("--sizes-steps", type=int, default=100)
    parser.add_argument("--presets", nargs="+", default=["scale-free", "report"], help="the sizes section's")
    parser.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="the sizes section's")
    parser.add_argument("--reuse", action="store_true", help="sizes: keep the PNGs already in --out")
    parser.add_argument("--measure-only", action="store_true", help="sizes: run nothing, measure the PNGs in --out")
    args = parser.parse_args()
    out, images = Path(args.out), Path(args.images)
    out.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()}", flush=True)
    results: dict = {"cpu": cpu_name()}
    if "finish" in args.only:
        results["finish"] = finish(images, args.weights, out)
        print("| preset | 512 px, its own settings, one `nst` command |\n| --- | --- |")
        for row in results["finish"]:
            print(f"| `{row['preset']}` | {row['seconds'] / 60:.1f} min |")
    if "sizes" in args.only:
        results["sizes"] = sizes(
            images, args.weights, out, args.sizes_steps, args.presets, args.sizes, args.reuse, args.measure_only
        )
        sheet(results["sizes"], out, args.sizes_steps)
        print("| preset | size | run | stroke frequency (cycles / width) | Gram distance at 256 px |")
        print("| --- | --- | --- | --- | --- |")
        for run in results["sizes"]:
            took = f"{run['seconds'] / 60:.1f} min" if run["seconds"] else "(earlier run)"
            print(
                f"| `{run['preset']}` | {run['size']} px | {took} | "
                f"{run['stroke_frequency']:.1f} | {run['gram_distance']:.3g} |"
            )
    (out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
