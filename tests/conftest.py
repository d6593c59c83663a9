"""Test set-up: keep every cache and config out of $HOME, find the shared
real weights and images, and make tiny inputs."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before TensorFlow, Keras or matplotlib are imported by any test module.
_SANDBOX = Path(tempfile.mkdtemp(prefix="nst-tests-"))
for _var, _sub in {
    "KERAS_HOME": "keras",
    "NST_CACHE": "cache",
    "MPLCONFIGDIR": "mpl",
    "IPYTHONDIR": "ipython",
    "JUPYTER_CONFIG_DIR": "jupyter/config",
    "JUPYTER_DATA_DIR": "jupyter/data",
    "JUPYTER_RUNTIME_DIR": "jupyter/runtime",
}.items():
    os.environ[_var] = str(_SANDBOX / _sub)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("NST_VGG19_WEIGHTS", None)
# The Ray clusters tests start (test_cluster, the docs' cluster commands) authenticate with a token of this
# session, not one written under $HOME; set before Ray is imported, which reads them once.
os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=os.urandom(16).hex(), RAY_USAGE_STATS_ENABLED="0")
os.environ.pop("RAY_ADDRESS", None)

import numpy as np
import pytest
from hypothesis import settings

# Property tests: in CI the same examples every run (a red CI must mean a
# real failure, reproducible from its log); locally, more and new examples.
settings.register_profile("ci", derandomize=True, database=None, max_examples=150, deadline=None)
settings.register_profile("dev", max_examples=600, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BLOCK13_WEIGHTS = SHARED / "weights" / "vgg19_imagenet_block1_to_block3.npz"
IMAGES = SHARED / "images"
# The real samples where ../shared has them; else the drawn stand-ins, asked for.
os.environ.setdefault("NST_IMAGES", str(IMAGES) if IMAGES.is_dir() else "synthetic")

#: Layers that the block 1-3 weights file covers, as in the issue's check.
BLOCK13_LAYERS = {"style_layers": ("block1_conv1", "block2_conv1", "block3_conv1"), "content_layers": ("block3_conv2",)}
#: Small, fast settings for plumbing tests on random weights.
TINY = {"size": 32, "steps": 4, "weights": "random", "seed": 0, **BLOCK13_LAYERS}


@pytest.fixture(scope="session")
def block13_weights() -> Path:
    if not BLOCK13_WEIGHTS.is_file():
        pytest.skip(f"real block 1-3 VGG19 weights not found at {BLOCK13_WEIGHTS}")
    return BLOCK13_WEIGHTS


def _photo(name: str, fallback_seed: int) -> np.ndarray:
    """A real image from ../shared/images if present, else a made-up one."""
    from nst.io.images import load_image

    if (IMAGES / name).is_file():
        return load_image(IMAGES / name, size=128)
    rng = np.random.default_rng(fallback_seed)
    y, x = np.mgrid[0:96, 0:128] / 32.0
    base = np.stack([np.sin(x + fallback_seed), np.cos(y * 1.3), np.sin(x * y / 3)], -1) * 0.4 + 0.5
    return np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def content_image() -> np.ndarray:
    return _photo("tubingen.jpg", 1)


@pytest.fixture(scope="session")
def style_image() -> np.ndarray:
    return _photo("starry_night.jpg", 2)


class Watched:
    """A child process's output stream, read in a thread as it comes (the
    progress bars write carriage returns, not lines), so that a test can
    wait for what the process says rather than for a length of time."""

    def __init__(self, process: "subprocess.Popen", stream) -> None:
        import threading

        self.process, self.text = process, ""
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for chunk in iter(lambda: stream.read(1), ""):
            self.text += chunk

    def wait_for(self, pattern: str, limit: float = 300.0) -> "re.Match":
        """The first match of ``pattern`` in the output, once it is there;
        fails if the process ends first or ``limit`` seconds go by (a
        generous bound: a loaded machine is slow, not wrong)."""
        import re
        import time

        deadline = time.monotonic() + limit
        while not (found := re.search(pattern, self.text)):
            assert self.process.poll() is None, f"ended before saying {pattern!r}:\n{self.text[-3000:]}"
            assert time.monotonic() < deadline, f"never said {pattern!r}:\n{self.text[-3000:]}"
            time.sleep(0.05)
        return found

    def rest(self, timeout: float = 120.0) -> str:
        """All of the output, once the process has ended."""
        self.process.wait(timeout)
        self._reader.join(timeout)
        return self.text
