"""The ground floor: every setting and its default (`config`, `presets`), how
a value is checked (`checks`), VGG19's layer geometry (`geometry`), where files
are kept (`cache`) and TensorFlow itself (`backend`). Imports nothing above."""

import importlib
from collections.abc import Callable
from types import ModuleType


def submodules(package: str) -> Callable[[str], ModuleType]:
    """A ``__getattr__`` for ``package`` that imports its modules as they
    are first used: ``nst.core.device.current()`` after a plain ``import nst``."""

    def __getattr__(name: str) -> ModuleType:
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{package}.{name}":  # a module it imports is missing: say so
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


__getattr__ = submodules(__name__)
