"""TensorFlow, imported once for the whole package, without its start-up noise.

Every module that needs TensorFlow takes it from here (``from nst.base.backend
import tf``). While TensorFlow's C++ core loads it prints its oneDNN and
CUDA notices straight to the process's stderr, before its logging is set up,
so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop them (and two of its libraries print
each one): the import runs with file descriptor 2 sent to /dev/null, and
``TF_CPP_MIN_LOG_LEVEL`` is 2 (warnings and errors only) unless set. An
import that fails still raises, after stderr is back, and a missing
TensorFlow says how to install one (nst does not depend on a particular
build: see pyproject.toml).

XLA keeps what it compiles on disk, in `nst.base.cache.xla_dir` (TensorFlow's
``--tf_xla_persistent_cache_directory``, unless $TF_XLA_FLAGS names a
folder already), so a later process that runs a step of the same shape
loads it instead of compiling it again (the first step's time: BENCHMARKS.md, "Numbers behind the code's choices").
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from nst.base.cache import xla_dir


def _import_tensorflow() -> ModuleType:
    if sys.modules.get("tensorflow") is not None:  # imported already (by the user, or an earlier nst module)
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "--tf_xla_persistent_cache_directory" not in flags:
        os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={xla_dir()}".strip()
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow
    except ModuleNotFoundError as e:
        if e.name != "tensorflow":
            raise
        raise ModuleNotFoundError(
            "nst needs TensorFlow (2.16 or newer), which is not installed here: pip install 'nst[tensorflow]' "
            "(or 'nst[cpu]' for the CPU-only build on Linux), or install TensorFlow yourself.",
            name="tensorflow",
        ) from None
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
    return tensorflow


tf = _import_tensorflow()
