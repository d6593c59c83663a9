"""nst's measured path against a plain Keras loop, each in its own process.

    python benchmarks/paths.py                          # ~35 min on 2 CPU cores
    python benchmarks/paths.py --sizes 512 --networks blocks1-3

For each network (blocks 1-3 with the exact weights; the paper's layers,
the report preset, with the 8-bit weights) and size, on the same images and
the same objective (the report's, with the preset's alpha and beta), each
run in a fresh process whose clock starts after `import tensorflow`:

- plain: `plain.py`'s Keras loop (float32, no XLA, Keras' pooling);
- nst, first run: default settings and an empty $NST_CACHE, so it measures
  its paths before its first step (`nst.core.execution`; included in its time);
- nst, later run: the same, with the path that first run remembered;
- nst, float32 + XLA: the path nst took on every machine before it measured;
- nst, float32 + TensorFlow kernels + Keras pooling: the plain loop's
  arithmetic, so the difference is nst's own overhead.

Each run does `--steps` Adam steps (nst is asked for its default 500 and
stopped there, so it measures as a default run would). The table gives the
seconds to the end of the last step (model, targets, compilation and, for
the first nst run, the measurement included), the median later step, and
the objective of the final image, scored in float32 by `plain.py` for all
runs alike. Ratios are to the plain loop of the same row.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE.parents[1] / "shared" / "weights"
NETWORKS = {
    "blocks1-3": ("blocks1-3", WEIGHTS / "vgg19_imagenet_block1_to_block3.npz", "blocks 1-3, exact weights"),
    "paper": ("report", WEIGHTS / "vgg19_imagenet_8bit.npz", "the paper's layers (report preset), 8-bit weights"),
}
CONTENT, STYLE = "sample:tubingen", "sample:starry_night"


def child(kind: str, network: str, size: int, steps: int, out: str, settings: dict) -> None:
    """One run, in this process: prints its timings as JSON, saves its image to ``out``."""
    import time

    import numpy as np

    if kind != "plain":
        import nst  # before TensorFlow: it turns oneDNN on as a user's `import nst` does
    import tensorflow as tf  # noqa: F401  (the clock starts after it, for both)

    t0 = time.perf_counter()
    preset, weights, _ = NETWORKS[network]
    times = []
    if kind == "plain":
        sys.path.insert(0, str(HERE))
        from plain import Plain

        import nst.io.images  # only to read the same images at the same size (no TensorFlow in it)

        config = nst.preset(preset)
        loop = Plain(
            nst.io.images.load_image(CONTENT, size),
            nst.io.images.load_image(STYLE, size),
            style_layers=config.style_layers,
            content_layers=config.content_layers,
            weights=dict(np.load(weights)),
            alpha=config.content_weight,
            beta=config.style_weight,
        )
        for _ in range(steps):
            float(loop.step())
            times.append(time.perf_counter() - t0)
        image, path = loop.image.numpy()[0], "float32, TensorFlow kernels, keras pooling (plain Keras loop)"
    else:

        def stop(progress: nst.Progress) -> None:  # step k's report comes after k + 1 compiled steps
            times.append(time.perf_counter() - t0)
            if progress.step >= steps - 1:
                raise KeyboardInterrupt  # nst keeps what it made and returns

        result = nst.stylize(CONTENT, STYLE, preset=preset, size=size, weights=str(weights), callback=stop, **settings)
        image, path = result.image, result.path
    np.save(out, image)
    later = np.diff(times[1:])
    print(json.dumps({"total": times[steps - 1], "step": float(np.median(later)), "path": path}))


def objective(network: str, size: int, images: list[str]) -> list[float]:
    """The report's objective of each image, in float32, by `plain.py`."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from plain import Plain

    import nst

    preset, weights, _ = NETWORKS[network]
    config = nst.preset(preset)
    content, style = nst.io.images.load_image(CONTENT, size), nst.io.images.load_image(STYLE, size)
    loop = Plain(
        content,
        style,
        style_layers=config.style_layers,
        content_layers=config.content_layers,
        weights=dict(np.load(weights)),
        alpha=config.content_weight,
        beta=config.style_weight,
    )
    return [float(loop.objective(np.load(image)[None])) for image in images]


def run(kind: str, network: str, size: int, steps: int, folder: str, cache: str, **settings) -> dict:
    out = os.path.join(folder, f"{kind}-{network}-{size}.npy")
    env = dict(os.environ, NST_CACHE=cache)
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, network, str(size), str(steps), out, json.dumps(settings)],
        capture_output=True,
        text=True,
        env=env,
    )
    if done.returncode:
        raise RuntimeError(f"{kind} {network} {size}: {done.stderr[-2000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "image": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS), choices=list(NETWORKS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, network, size, steps, out, settings = args.child
        child(kind, network, int(size), int(steps), out, json.loads(settings))
        return
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")), "?")
    flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f" {f} " in f" {cpu} "]
    print(f"Machine: {model}, {os.cpu_count()} cores, flags {' '.join(flags)}\n")
    fixed = {"precision": "float32", "jit_compile": True, "pooling_op": "reshape"}
    plain = {"precision": "float32", "jit_compile": False, "pooling_op": "keras"}
    for network in args.networks:
        rows = []
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as folder:
                cache = os.path.join(folder, "cache")
                runs = {
                    "plain Keras loop": run("plain", network, size, args.steps, folder, cache),
                    "nst, first run (measures)": run("nst", network, size, args.steps, folder, cache),
                    "nst, later run": run("nst-later", network, size, args.steps, folder, cache),
                    "nst, float32 + XLA": run("nst-xla", network, size, args.steps, folder, cache, **fixed),
                    "nst, the plain loop's path": run("nst-plain", network, size, args.steps, folder, cache, **plain),
                }
                scores = objective(network, size, [r["image"] for r in runs.values()])
            base = runs["plain Keras loop"]
            for (name, r), score in zip(runs.items(), scores):
                rows.append(
                    f"| {size} | {name} | {r['total']:.1f} ({r['total'] / base['total']:.2f}) | "
                    f"{r['step']:.3f} ({r['step'] / base['step']:.2f}) | {score:.4g} "
                    f"({score / scores[0] - 1:+.2%}) | {r['path']} |"
                )
        print(f"{NETWORKS[network][2]}: {args.steps} Adam steps; ratios to the plain loop\n")
        print(
            "| size | run | s to the last step (ratio) | s per later step (ratio) | objective, float32 "
            "(vs plain) | path |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(rows) + "\n", flush=True)


if __name__ == "__main__":
    main()
