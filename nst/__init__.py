"""nst: neural style transfer as in Gatys et al. (2016), in TensorFlow.

    import nst
    result = nst.stylize("photo.jpg", "painting.jpg", steps=300)
    result.save("out.png")

    # a sweep, run as one batch: three style weights
    results = nst.stylize_many(nst.grid(["photo.jpg"], ["painting.jpg"], style_weight=[1e2, 1e3, 1e4]))

    # a clip, without flicker: out.mp4, and each frame in out-frames/
    nst.stylize_video("clip.mp4", "painting.jpg", "out.mp4", size=256)

`Config`, `preset` and `PRESETS` hold the settings and their defaults;
`Job` and `grid` describe runs; `stylize`, `stylize_many`, `batch` (many pictures into a folder, resumable),
`Result`, `Progress` and `stylize_video` load TensorFlow when they are used, so that
importing `nst` (and `nst --help`) stays fast.
"""

from __future__ import annotations

import os as _os
import sys as _sys

__version__ = "0.1.0"

#: The GitHub repository (owner/name) that the README's Colab badges and the
#: notebooks' install cells point to. `make repository REPO=owner/name`
#: rewrites every one of them; a test checks that they agree with this.
REPOSITORY = "OWNER/nst"

# With oneDNN on (TensorFlow leaves it off on some CPUs), TensorFlow's CPU
# allocator keeps freed memory for reuse, so an XLA-compiled step's buffers
# skip the page faults of fresh memory: faster steps for more peak memory
# (TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 gives that back; BENCHMARKS.md, "Numbers behind the code's choices"). XLA
# compiles its own convolutions either way. The switch is read when
# TensorFlow is imported; a user's own setting wins.
if "tensorflow" not in _sys.modules:
    _os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from nst.base.config import PRESETS, Config, ConfigError, preset

#: The public names that load TensorFlow (or Ray) only when they are used.
_LAZY = {
    "stylize": "nst.run.optimize",
    "stylize_many": "nst.run.optimize",
    "grid": "nst.io.jobs",
    "Job": "nst.io.jobs",
    "Result": "nst.run.record",
    "Progress": "nst.run.record",
    "stylize_video": "nst.modes.video",
    "batch": "nst.modes.batch",
}
#: The layers, bottom first (tests/test_layout.py holds them to this order).
PACKAGES = ("base", "io", "core", "run", "modes", "ui")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in PACKAGES:  # nst.core.device, nst.ui.preview, ... after a plain `import nst`
        return importlib.import_module(f"nst.{name}")
    raise AttributeError(f"module 'nst' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "REPOSITORY",
    "Config",
    "ConfigError",
    "Job",
    "Progress",
    "Result",
    "__version__",
    "batch",
    "grid",
    "preset",
    "stylize",
    "stylize_many",
    "stylize_video",
]
