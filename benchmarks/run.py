"""nst against the TensorFlow tutorial's loop, on the same work, in one run.

    python benchmarks/run.py                     # everything below, ~35 min on 2 CPU cores
    python benchmarks/run.py --only steps floor  # some sections

Sections (each prints a Markdown table; ratios are nst / baseline, measured
in this run, interleaved):

- steps: seconds per step at 256 and 512 px, random weights (the arithmetic
  does not depend on them): the tutorial loop, nst with the tutorial's
  layers and losses, nst with the report's; median over repeats.
- floor: the FLOP count of one step from the layer shapes (forward to the
  deepest layer, backward to the image) over a measured matmul rate.
- startup: `nst --help`, and a whole `nst` run of one step (import, model,
  compile) as seen from the shell.
- memory: peak resident memory of a short run at 512 and 1024 px.
- tiles: peak memory and seconds per step at 512, 1024 and 2048 px, untiled
  (up to --untiled-up-to) and with --tile 256 and 512.
- converge: the report's objective on real weights, for blocks 1-3 (the
  exact file; alpha 1, beta 1e4) and for the paper's layers (the 8-bit file,
  the report preset; --networks picks): the tutorial's loop with its weights
  set so that it minimises exactly that objective, 300 steps; then how long
  nst (L-BFGS) takes to reach the objective the baseline reached.
- coarse: a 1024 px coarse-to-fine run (256 -> 512 -> 1024 px), its total
  time from the call, against the baseline's per-step time at 1024 px.
- sweep: four runs with different style weights as one batch (`stylize_many`)
  against the same four run one after another.
- regions: seconds per step with two regions against none (random weights,
  paper's layers), and how sharp the border between two regions comes out
  with each --mask-mode (real block 1-3 weights): across a left/right
  split, each strip's style statistics move from one painting's to the
  other's; the width over which they do is the border's.
- video: `nst video` on the synthetic clip (`synthetic.py`: a still photo,
  a patch moving 3 px a frame), the report preset on the 8-bit weights:
  the mean frame-to-frame change where the picture is still and where the
  patch moves, for temporal weights from 0 (each frame on its own, the
  baseline) up; and the seconds per frame at a larger size.
"""

# ruff: noqa: I001  (import order is deliberate, see below)
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The order matters: `nst` turns oneDNN on before TensorFlow loads (the
# baseline, in this process, gets it too), and the baseline lives beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import nst
import tensorflow as tf
from tutorial import Tutorial

from nst.base.config import PAPER_STYLE_LAYERS, VideoConfig
from nst.base.geometry import VGG19_BLOCK_CHANNELS, VGG19_CONV_LAYERS
from nst.io.images import load_image

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg19_imagenet_block1_to_block3.npz"
EIGHTBIT_WEIGHTS = SHARED_WEIGHTS.with_name("vgg19_imagenet_8bit.npz")
CONTENT, STYLE = "sample:tubingen", "sample:starry_night"


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


# -- steps ----------------------------------------------------------------------


def seconds_per_step(step, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        float(step())  # waits for the result
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def nst_step_time(preset: str, size: int, steps: int) -> float:
    result = nst.stylize(CONTENT, STYLE, preset=preset, size=size, steps=steps, weights="random", seed=0)
    return result.timings["step"]


#: The tutorial's loop as its users run it on this CPU: its own process, where
#: TensorFlow leaves oneDNN off (nst turns it on in this one).
PLAIN_CHILD = """
import json, os, statistics, sys, time
sys.path.insert(0, {here!r})
import tensorflow as tf
from tutorial import Tutorial
import numpy as np
steps, images = int(sys.argv[1]), np.load(sys.argv[2])
baseline = Tutorial(images["content"], images["style"])
float(baseline.step())
times = []
for _ in range(steps):
    t = time.perf_counter()
    float(baseline.step())
    times.append(time.perf_counter() - t)
print(json.dumps(statistics.median(times)))
"""


def plain_step_time(content: np.ndarray, style: np.ndarray, steps: int) -> float:
    code = PLAIN_CHILD.format(here=str(Path(__file__).resolve().parent))
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    with tempfile.TemporaryDirectory() as folder:
        images = Path(folder) / "images.npz"
        np.savez(images, content=content, style=style)
        done = subprocess.run(
            [sys.executable, "-c", code, str(steps), str(images)], capture_output=True, text=True, check=True, env=env
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_steps(sizes: tuple[int, ...], repeats: int, steps: int) -> dict:
    rows, out = [], {}
    for size in sizes:
        content, style = load_image(CONTENT, size), load_image(STYLE, size)
        baseline = Tutorial(content, style)
        baseline.step()  # trace
        base, plain, tut, rep = [], [], [], []
        for _ in range(repeats):  # interleaved, so drifts in machine speed hit all of them
            base.append(seconds_per_step(baseline.step, steps))
            plain.append(plain_step_time(content, style, steps))
            tut.append(nst_step_time("tutorial", size, steps + 2))
            rep.append(nst_step_time("report", size, steps + 2))
        b, u, t, r = (statistics.median(x) for x in (base, plain, tut, rep))
        out[size] = {"baseline": b, "plain": u, "nst_tutorial": t, "nst_report": r}
        h, w = content.shape[:2]
        rows.append(
            [
                f"{w}x{h}",
                f"{b:.3f}",
                f"{u:.3f}",
                f"{t:.3f} ({t / b:.2f} / {t / u:.2f})",
                f"{r:.3f} ({r / b:.2f} / {r / u:.2f})",
            ]
        )
    print(
        f"Seconds per Adam step, median of {repeats} interleaved repeats of {steps} steps (random weights); "
        f"ratios to the tutorial loop in this process (oneDNN on) / in its own (oneDNN off, as its users run it):\n"
    )
    table(
        [
            "size",
            "tutorial loop, oneDNN on",
            "tutorial loop, own process",
            "nst, tutorial preset (ratios)",
            "nst, report preset (ratios)",
        ],
        rows,
    )
    return out


# -- floor ------------------------------------------------------------------------


def step_flops(height: int, width: int, deepest: str, style_layers: tuple[str, ...] = PAPER_STYLE_LAYERS) -> float:
    """Multiply-adds x 2 of one step: the convolutions up to ``deepest``,
    forward and backward to the input (no filter gradients: the weights are
    fixed), and the Gram matrices of the style layers (G = F F^T, and
    (G - A) F in the backward pass: 2 N^2 M each)."""
    flops, channels_in = 0.0, 3
    for layer in VGG19_CONV_LAYERS[: VGG19_CONV_LAYERS.index(deepest) + 1]:
        block = int(layer[5])
        scale = 2 ** (block - 1)
        out = VGG19_BLOCK_CHANNELS[block]
        positions = (height // scale) * (width // scale)
        flops += 2 * 2 * positions * channels_in * out * 9  # forward + backward to the input
        if layer in style_layers:
            flops += 2 * 2 * out * out * positions
        channels_in = out
    return flops


def matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    a = tf.random.normal((n, n))
    f = tf.function(lambda: tf.matmul(a, a))
    f().numpy()
    t = time.perf_counter()
    for _ in range(repeats):
        f().numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - t)


def section_floor(steps: dict) -> None:
    rate = matmul_rate()
    rows = []
    for size, measured in steps.items():
        h, w = load_image(CONTENT, size).shape[:2]
        for name, deepest, key in (
            ("tutorial preset", "block5_conv2", "nst_tutorial"),
            ("report preset", "block5_conv1", "nst_report"),
        ):
            flops = step_flops(h, w, deepest)
            floor = flops / rate
            rows.append(
                [
                    f"{w}x{h}",
                    name,
                    f"{flops / 1e9:.0f}",
                    f"{floor:.3f}",
                    f"{measured[key]:.3f}",
                    f"{measured[key] / floor:.2f}",
                ]
            )
    print(f"FLOP floor: measured float32 matmul rate {rate / 1e9:.0f} GFLOP/s (2048x2048, tf.function):\n")
    table(["size", "nst", "GFLOP per step", "floor s", "measured s", "measured / floor"], rows)


# -- startup ------------------------------------------------------------------------


def wall(command: list[str], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def section_startup() -> None:
    nst_cli = [sys.executable, "-m", "nst"]
    help_s = wall([*nst_cli, "--help"])
    one = wall(
        [
            *nst_cli,
            "--demo",
            "--weights",
            "random",
            "--size",
            "256",
            "--steps",
            "1",
            "--quiet",
            "-o",
            "/tmp/nst-bench-startup.png",
        ],
        repeats=2,
    )
    print("Start-up, median wall time from the shell:\n")
    table(["command", "seconds"], [["nst --help", f"{help_s:.2f}"], ["nst --demo, 256 px, 1 step", f"{one:.1f}"]])


# -- memory --------------------------------------------------------------------------

MEMORY_CHILD = """
import json, sys
sys.path.insert(0, {here!r})
which, size, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) or None
import nst
import tensorflow
from nst.io.images import load_image
# VmHWM (peak) and VmRSS, not getrusage's ru_maxrss: Linux carries ru_maxrss
# across fork and exec, so a child would report this benchmark's own size.
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
imported = status("VmRSS")
if which == "baseline":
    from tutorial import Tutorial
    t = Tutorial(load_image({content!r}, size), load_image({style!r}, size))
    for _ in range(3):
        float(t.step())
else:
    step = nst.stylize({content!r}, {style!r}, preset=which, size=size, steps=3, weights="random", seed=0,
                       tile=tile).timings["step"]
print(json.dumps([status("VmHWM"), imported, step if which != "baseline" else None]))
"""

#: nst's report preset with TensorFlow's oneDNN memory pool off: oneDNN's
#: allocator keeps freed memory for reuse, which spares each step the page
#: faults of a fresh XLA buffer (~6% of a step) and costs its pool.
SYSTEM_ALLOCATOR = {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}


def peak_bytes(which: str, size: int, env: dict[str, str] | None = None, tile: int | None = None) -> tuple[int, ...]:
    """Peak resident bytes of a 3-step run in a fresh process, its resident
    bytes after importing nst and TensorFlow, and nst's seconds per step."""
    code = MEMORY_CHILD.format(here=str(Path(__file__).resolve().parent), content=CONTENT, style=STYLE)
    done = subprocess.run(
        [sys.executable, "-c", code, which, str(size), str(tile or 0)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def section_memory(sizes: tuple[int, ...]) -> None:
    rows, gib = [], 2**30
    for size in sizes:
        (base, imported, _), (tut, _, _), (rep, _, _), (sys_, _, _) = (
            peak_bytes("baseline", size),
            peak_bytes("tutorial", size),
            peak_bytes("report", size),
            peak_bytes("report", size, SYSTEM_ALLOCATOR),
        )
        rows.append(
            [
                str(size),
                f"{base / gib:.2f}",
                f"{tut / gib:.2f} ({tut / base:.2f})",
                f"{rep / gib:.2f} ({rep / base:.2f})",
                f"{sys_ / gib:.2f} ({sys_ / base:.2f})",
                f"{imported / gib:.2f}",
                f"{(sys_ - imported) / (base - imported):.2f}",
            ]
        )
    print(
        "Peak resident memory (GiB) of a 3-step run in a fresh process; the last columns: what a process holds "
        "after `import nst, tensorflow`, and the ratio of the peaks above that (system allocator / baseline):\n"
    )
    table(
        [
            "size",
            "tutorial loop",
            "nst, tutorial preset (ratio)",
            "nst, report preset (ratio)",
            "nst, report, TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 (ratio)",
            "after import",
            "above import (ratio)",
        ],
        rows,
    )


# -- tiles -----------------------------------------------------------------------------


def section_tiles(sizes: tuple[int, ...], tile_sizes: tuple[int, ...], untiled_up_to: int) -> None:
    rows, gib = [], 2**30
    for size in sizes:
        row = [str(size)]
        untiled = peak_bytes("report", size) if size <= untiled_up_to else None
        row.append(f"{untiled[0] / gib:.2f} GiB, {untiled[2]:.2f} s" if untiled else "not run")
        for tile in tile_sizes:
            peak, _, step = peak_bytes("report", size, tile=tile)
            ratio = f" ({step / untiled[2]:.2f}x)" if untiled else ""
            row.append(f"{peak / gib:.2f} GiB, {step:.2f} s{ratio}")
        rows.append(row)
    print(
        "Tiles: peak resident memory and seconds per step of a 3-step run of the report preset (the paper's "
        "layers; random weights, the arithmetic does not depend on them), in a fresh process; the ratio is "
        "to the untiled step:\n"
    )
    table(["size", "untiled", *(f"--tile {t}" for t in tile_sizes)], rows)


# -- converge --------------------------------------------------------------------------


#: The converge section's networks: preset and weights file of each.
NETWORKS = {
    "blocks1-3": ("blocks1-3", SHARED_WEIGHTS, "blocks 1-3, exact weights"),
    "paper": ("report", EIGHTBIT_WEIGHTS, "the paper's layers (report preset), 8-bit weights"),
}


def section_converge(sizes: tuple[int, ...], baseline_steps: int, networks: list[str]) -> None:
    for network in networks:
        name, path, what = NETWORKS[network]
        if not path.is_file():
            print(f"converge ({what}): skipped, no {path}\n")
            continue
        converge(nst.preset(name, weights=str(path)), dict(np.load(path)), sizes, baseline_steps, what)


def converge(config: nst.Config, weights: dict, sizes: tuple[int, ...], baseline_steps: int, what: str) -> None:
    rows = []
    (content_layer,) = config.content_layers
    block = int(content_layer[5])  # "block<b>_conv<k>": 2^(b-1) times smaller, VGG19_BLOCK_CHANNELS[b] channels
    for size in sizes:
        content, style = load_image(CONTENT, size), load_image(STYLE, size)
        h, w = content.shape[:2]
        # The tutorial's losses are the report's up to constants: mean (F-P)^2 = 2/(N M) x the report's
        # content loss, and mean (G/M - A/M)^2 = 4 E_l. These weights make its objective the report's.
        n, m = VGG19_BLOCK_CHANNELS[block], (h // 2 ** (block - 1)) * (w // 2 ** (block - 1))
        baseline = Tutorial(
            content,
            style,
            style_layers=config.style_layers,
            content_layers=config.content_layers,
            weights=weights,
            content_weight=config.content_weight * n * m / 2,
            style_weight=config.style_weight / 4,
            tv_weight=0.0,
        )
        start = time.perf_counter()
        losses = [float(baseline.step()) for _ in range(baseline_steps)]
        base_time = time.perf_counter() - start
        target = min(losses)

        def stop_when_reached(progress: nst.Progress, target: float = target) -> None:
            if progress.losses["total"] <= target:
                raise KeyboardInterrupt  # nst keeps what it has and returns

        lbfgs = config.replace(size=size, steps=baseline_steps, optimizer="lbfgs")
        result = nst.stylize(content, style, config=lbfgs, callback=stop_when_reached)
        h_ = result.history
        reached = next((i for i, v in enumerate(h_["total"]) if v <= target), None)
        nst_time = h_["time"][reached] if reached is not None else float("nan")
        rows.append(
            [
                f"{w}x{h}",
                f"{target:.4g}",
                f"{base_time:.1f}",
                f"{reached} evaluations, {nst_time:.1f} s ({nst_time / base_time:.2f})"
                if reached is not None
                else "not reached",
            ]
        )
    print(
        f"Time to the baseline's objective after {baseline_steps} steps (the report's objective on {what}; "
        f"nst: L-BFGS, time from its first step, compilation included):\n"
    )
    table(["size", "baseline objective", "baseline s", "nst to reach it (ratio)"], rows)


# -- coarse to fine ------------------------------------------------------------------


def section_coarse(scales: tuple[int, ...], scale_steps: tuple[int, ...]) -> None:
    size = scales[-1]
    content, style = load_image(CONTENT, size), load_image(STYLE, size)
    baseline = Tutorial(content, style)
    baseline.step()  # trace
    per_step = seconds_per_step(baseline.step, 3)
    start = time.perf_counter()
    result = nst.stylize(CONTENT, STYLE, weights="random", seed=0, scales=scales, scale_steps=scale_steps)
    total = time.perf_counter() - start
    h, w = content.shape[:2]
    steps = sum(scale_steps)
    at_scale = [result.history["time"][result.history["size"].index(float(s))] for s in scales[1:]]
    print(
        f"Coarse to fine to {w}x{h} (report preset, random weights; scales {list(scales)}, steps "
        f"{list(scale_steps)}), total time of the `stylize` call:\n"
    )
    table(
        ["run", "seconds"],
        [
            [
                f"nst, {steps} steps over {len(scales)} scales (scales start at {', '.join(f'{t:.0f}' for t in at_scale)} s)",
                f"{total:.0f}",
            ],
            [
                f"tutorial loop, {steps} steps at {w}x{h} ({per_step:.1f} s per step, 3 steps measured)",
                f"{per_step * steps:.0f} (x{per_step * steps / total:.1f})",
            ],
        ],
    )


# -- sweep ------------------------------------------------------------------------------


def section_sweep(size: int, steps: int) -> None:
    weights = [1e2, 1e3, 1e4, 1e5]
    jobs = nst.grid([CONTENT], [STYLE], style_weight=weights)
    settings = {"preset": "blocks1-3", "size": size, "steps": steps, "weights": "random", "seed": 0}
    nst.stylize_many(jobs[:1], **{**settings, "steps": 2})  # compile once for both
    start = time.perf_counter()
    for job in jobs:
        nst.stylize(job.content, job.style, **settings, **job.settings)
    apart = time.perf_counter() - start
    start = time.perf_counter()
    nst.stylize_many(jobs, **settings)
    together = time.perf_counter() - start
    print(
        f"A sweep of {len(jobs)} style weights, {size} px, {steps} steps each (blocks 1-3, random weights), "
        f"wall time including compilation:\n"
    )
    table(
        ["how", "seconds"],
        [
            ["one after another (`stylize` x 4)", f"{apart:.1f}"],
            ["one batch (`stylize_many`)", f"{together:.1f} ({together / apart:.2f})"],
        ],
    )


def section_regions(sizes: tuple[int, ...], steps: int, border_size: int, border_steps: int) -> None:
    from nst.core.features import extractor_for

    rows = []
    for size in sizes:
        settings = {"preset": "report", "size": size, "weights": "random", "seed": 0}
        photo = load_image(CONTENT, size)
        left = np.zeros(photo.shape[:2], np.float32)
        left[:, : photo.shape[1] // 2] = 1
        plain = nst.stylize(CONTENT, STYLE, steps=steps, **settings).timings["step"]
        masked = nst.stylize(
            CONTENT, [STYLE, "sample:the_scream"], masks=[left, 1 - left], steps=steps, **settings
        ).timings["step"]
        rows.append([f"{size} px", f"{plain:.3f}", f"{masked:.3f} ({masked / plain:.2f})"])
    print(f"Seconds per step, paper's layers, random weights, median of {steps} steps:\n")
    table(["size", "no regions", "two regions (ratio)"], rows)

    if not SHARED_WEIGHTS.is_file():
        return
    paintings = (STYLE, "sample:the_scream")
    config = nst.preset("blocks1-3", size=border_size, steps=border_steps, weights=str(SHARED_WEIGHTS))
    extractor = extractor_for(config)

    def statistics(image: np.ndarray) -> list[np.ndarray]:
        features = extractor(tf.constant(image[None]))
        return [(lambda f: f.T @ f / len(f))(f.numpy()[0].reshape(-1, f.shape[-1])) for f in features.style]

    targets = [statistics(load_image(p, border_size)) for p in paintings]
    photo = load_image(CONTENT, border_size)
    height, width = photo.shape[:2]
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1
    rows = []
    for mode in ("propagate", "erode"):
        result = nst.stylize(CONTENT, list(paintings), masks=[left, 1 - left], config=config.replace(mask_mode=mode))
        centres, scores = [], []
        for x in range(0, width - 16 + 1, 4):  # strips 16 px wide: 0 = the left painting's statistics, 1 = the right's
            s = statistics(result.best_image[:, x : x + 16])
            near, far = (sum(np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(s, t)) for t in targets)
            centres.append(x + 8)
            scores.append(near / (near + far))
        # From the left quarter's level (0) to the right quarter's (1), made
        # monotone for the crossings.
        scores = np.array(scores)
        ends = [np.median(scores[: len(scores) // 4]), np.median(scores[-len(scores) // 4 :])]
        scores = np.maximum.accumulate((scores - ends[0]) / (ends[1] - ends[0]))
        quarter, three = (float(np.interp(q, scores, centres)) for q in (0.25, 0.75))
        rows.append([mode, f"{ends[0]:.2f} / {ends[1]:.2f}", f"{quarter:.0f} -> {three:.0f}", f"{three - quarter:.0f}"])
    print(
        f"\nThe border between two regions (Tübingen, {paintings[0]} left, {paintings[1]} right, {border_size} px, "
        f"{border_steps} Adam steps, blocks 1-3, exact weights). A strip's score is its distance to the left "
        f"painting's statistics over the sum of its distances to both (levels: far left / far right); the columns "
        f"over which it goes from a quarter to three quarters of the way from one level to the other (border at "
        f"{width // 2} px):\n"
    )
    table(["--mask-mode", "score left / right", "columns", "border width (px)"], rows)


def section_video(size: int, weights: tuple[float, ...], timing_size: int, frames: int = 8) -> None:
    from synthetic import frame_change, moving_patch, still_region

    from nst.modes.video import stylize_video

    if not EIGHTBIT_WEIGHTS.is_file():
        print(f"(video: needs {EIGHTBIT_WEIGHTS})")
        return
    settings = {"weights": str(EIGHTBIT_WEIGHTS), "first_frame_steps": 200, "frame_steps": 100}
    with tempfile.TemporaryDirectory() as folder:
        rows, baseline = [], None
        for size_now, temporal in [(size, w) for w in weights] + [(timing_size, VideoConfig().temporal_weight)]:
            clip = Path(folder) / f"clip-{size_now}"
            if not clip.is_dir():
                clip.mkdir()
                for t, frame in enumerate(moving_patch(CONTENT, STYLE, frames, size_now)):
                    nst.io.images.save_image(clip / f"{t:02d}.png", frame)
            out = Path(folder) / f"out-{size_now}-{temporal:g}"
            result = stylize_video(clip, STYLE, out, size=size_now, temporal_weight=temporal, **settings)
            video = np.stack([load_image(p) for p in result.frames])
            still = still_region(video.shape[1:], size_now, frames)
            change, moving = frame_change(video, still), frame_change(video, ~still)
            baseline = change if temporal == 0 and size_now == size else baseline
            ratio = f" ({change / baseline:.2f})" if baseline and size_now == size else ""
            rows.append(
                [
                    f"{size_now} px",
                    f"{temporal:g}",
                    f"{change:.4f}{ratio}",
                    f"{moving:.4f}",
                    f"{result.timings['first_frame']:.1f}",
                    f"{result.timings['frame']:.1f}",
                ]
            )
    print(
        f"nst video, {frames} frames of the synthetic clip, report preset, 8-bit weights, 200 steps for the first "
        f"frame and 100 for each later one; change = mean |frame t - frame t-1| (ratio to temporal weight 0):\n"
    )
    table(
        [
            "size",
            "temporal weight",
            "change, still part",
            "change, moving patch",
            "first frame (s)",
            "later frames (s/frame)",
        ],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sections = ["steps", "floor", "startup", "memory", "tiles", "converge", "coarse", "sweep", "regions", "video"]
    parser.add_argument("--only", nargs="+", choices=sections)
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--memory-sizes", nargs="+", type=int, default=[512, 1024])
    parser.add_argument("--tile-sizes", nargs="+", type=int, default=[512, 1024, 2048])
    parser.add_argument("--tiles", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--untiled-up-to", type=int, default=1024, help="the largest size also run untiled")
    parser.add_argument("--converge-sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument(
        "--networks", nargs="+", choices=list(NETWORKS), default=list(NETWORKS), help="the converge section's networks"
    )
    parser.add_argument("--scales", nargs="+", type=int, default=[256, 512, 1024])
    parser.add_argument("--scale-steps", nargs="+", type=int, default=[100, 50, 20])
    parser.add_argument("--video-size", type=int, default=128)
    parser.add_argument("--temporal-weights", nargs="+", type=float, default=[0, 1e4, 1e5, 1e6])
    parser.add_argument("--video-timing-size", type=int, default=256, help="the size whose seconds per frame are timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-steps", type=int, default=300)
    args = parser.parse_args()
    only = set(args.only or sections)
    print(
        f"nst {nst.__version__}, TensorFlow {tf.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; {' '.join(sys.argv)}\n"
    )
    steps = section_steps(tuple(args.sizes), args.repeats, 5) if only & {"steps", "floor"} else {}
    if "floor" in only:
        section_floor(steps)
    if "startup" in only:
        section_startup()
    if "memory" in only:
        section_memory(tuple(args.memory_sizes))
    if "tiles" in only:
        section_tiles(tuple(args.tile_sizes), tuple(args.tiles), args.untiled_up_to)
    if "converge" in only:
        section_converge(tuple(args.converge_sizes), args.baseline_steps, args.networks)
    if "coarse" in only:
        section_coarse(tuple(args.scales), tuple(args.scale_steps))
    if "sweep" in only:
        section_sweep(256, 20)
    if "regions" in only:
        section_regions(tuple(args.sizes), 10, 256, 300)
    if "video" in only:
        section_video(args.video_size, tuple(args.temporal_weights), args.video_timing_size)
    print(f"(peak memory of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB)")


if __name__ == "__main__":
    main()
