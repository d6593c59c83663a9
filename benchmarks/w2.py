"""The cost of the Wasserstein-2 style term (`nst.core.wasserstein.w2_style`)
against the Gram term of the scaled form, per layer width: one term and
its gradient with respect to the features, with TensorFlow's kernels and
with XLA, on features of a 512 px image's VGG19 layers (N channels at
512 / stride positions a side). Prints seconds per evaluation and the
ratio W2 / Gram in the same run.

    .venv/bin/python benchmarks/w2.py
"""

from __future__ import annotations

import time

import numpy as np

from nst.base.backend import tf
from nst.base.cache import cpu
from nst.base.config import Config
from nst.core.losses import SCALED, form_of

#: (channels, positions a side) of block1_conv1 ... block5_conv1 for a 512 x 384 output.
LAYERS = ((64, 512), (128, 256), (256, 128), (512, 64), (512, 32))
REPEATS = 3


def _seconds(fn) -> float:
    fn()  # traces (and compiles)
    started = time.perf_counter()
    for _ in range(REPEATS):
        fn()
    return (time.perf_counter() - started) / REPEATS


def main() -> None:
    w2 = form_of(Config(loss_form="scaled", style_loss="w2"))
    rng = np.random.default_rng(0)
    model, flags = cpu()
    print(f"CPU: {model}, {len(flags)} flags (avx512f: {'avx512f' in flags}); TensorFlow {tf.__version__}")
    print("| N | positions | Gram (scaled), TF kernels | W2, TF kernels | W2, XLA | W2 / Gram |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, side in LAYERS:
        shape = (1, side * 3 // 4, side, n)
        features = tf.Variable(np.square(rng.standard_normal(shape)).astype(np.float32) * 30)
        style = tf.constant(np.square(rng.standard_normal(shape)).astype(np.float32) * 30)
        times = {}
        for name, form, jit in (("gram", SCALED, False), ("w2", w2, False), ("w2 xla", w2, True)):
            target = form.prepare(form.style_target(style, 1))

            @tf.function(jit_compile=jit)
            def step(form=form, target=target):
                with tf.GradientTape() as tape:
                    loss = form.style(features, target)
                return loss, tape.gradient(loss, features)

            times[name] = _seconds(step)
        print(
            f"| {n} | {shape[1]} x {shape[2]} | {times['gram']:.3f} s | {times['w2']:.3f} s | "
            f"{times['w2 xla']:.3f} s | {times['w2'] / times['gram']:.1f} |"
        )


if __name__ == "__main__":
    main()
