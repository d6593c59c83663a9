"""nst: neural style transfer as in Gatys et al. (2016), in TensorFlow.

    import nst
    result = nst.stylize("photo.jpg", "painting.jpg", steps=300)
    result.save("out.png")

`Config`, `preset` and `PRESETS` hold the settings and their defaults;
`stylize`, `Result` and `Progress` load TensorFlow on first use, so that
importing `nst` (and `nst --help`) stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

from nst.config import PRESETS, Config, ConfigError, preset  # noqa: E402

_LAZY = {"stylize": "nst.optimize", "Result": "nst.optimize", "Progress": "nst.optimize"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nst' has no attribute {name!r}")


__all__ = ["PRESETS", "Config", "ConfigError", "Progress", "Result", "__version__", "preset", "stylize"]
