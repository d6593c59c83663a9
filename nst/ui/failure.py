"""How the command line fails: one line per failure, and signals that never
cost a finished image.

`explain` turns any exception into the one line that ``nst`` prints;
`Signals` makes SIGINT and SIGTERM end a run the same way at any moment
(a ``KeyboardInterrupt``, exit status 128 + the signal) and holds them while
a file is being written; `Parser` is argparse with one-line errors;
`plain_warnings` shows each warning once, as one line; `end` ends the
process once everything is written. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any, NoReturn

from nst import REPOSITORY
from nst.base.config import ConfigError
from nst.io.images import ImageError, reason
from nst.io.weights import WeightsError
from nst.modes.cluster import ClusterError

#: Exit statuses: a failure found before the run starts, and one during it.
#: An interrupted run exits with 128 + the signal's number (130, 143).
BEFORE_RUN, DURING_RUN = 2, 1


#: Failures whose message already names the thing and the fix.
EXPLAINED = (ImageError, ConfigError, WeightsError, MemoryError, ModuleNotFoundError, ClusterError)


def explain(error: BaseException, details: str = "run again with --debug for the details") -> str:
    """``error`` as one line that names what failed and what to do
    (``details``: where the traceback of an unforeseen error can be seen)."""
    if isinstance(error, EXPLAINED):
        text = " ".join(str(error).split()) or "out of memory: use a smaller --size"
    elif isinstance(error, OSError):
        what = error.filename if error.filename is not None else "a file"
        text = f"{what}: {error.strerror or reason(error)}. Check the path, its permissions and the free disk space."
    else:  # not foreseen: still one line, and where to look next
        text = (
            f"{type(error).__name__}: {reason(error)} (unexpected: {details}, and report it at "
            f"https://github.com/{REPOSITORY}/issues)"
        )
    return text


class Signals:
    """Within ``with Signals() as signals:``, SIGINT and SIGTERM raise
    ``KeyboardInterrupt`` (SIGTERM otherwise kills Python with no chance to
    save), except inside ``signals.holding()``, which finishes first. A
    signal that the process was started ignoring (``nohup``, a background
    job) stays ignored. Only the main thread can set handlers; elsewhere this
    does nothing."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._holding = 0
        self._pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        for number in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                if signal.getsignal(number) != signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.received.append(number)
        if self._holding:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Finish the block (a file being written) before a signal acts."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
        if not self._holding and self._pending:
            self._pending = False
            raise KeyboardInterrupt

    @property
    def status(self) -> int:
        """The exit status of a run ended by the last signal (130 for Ctrl-C)."""
        return 128 + (self.received[-1] if self.received else signal.SIGINT)


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported as one line (not the usage
    text and then the error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(BEFORE_RUN, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def tolerant_output() -> None:
    """Print file names that are not valid UTF-8 (escaped) instead of failing:
    stderr does so already; stdout raises by default."""
    with contextlib.suppress(AttributeError, ValueError):  # a stream without reconfigure
        sys.stdout.reconfigure(errors="backslashreplace")


@contextlib.contextmanager
def plain_warnings(command: str) -> Iterator[None]:
    """Within: each warning shown once, as one line ``nst: warning: ...`` on
    stderr, not Python's ``file:line: UserWarning:`` and a source line (and
    not once per place that warns of the same thing)."""
    shown: set[str] = set()

    def show(
        message: Warning | str, category: type, filename: str, lineno: int, file: Any = None, line: str | None = None
    ) -> None:
        if str(message) not in shown:
            shown.add(str(message))
            print(f"{command}: warning: {message}", file=file or sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def end(status: int) -> NoReturn:
    """End the process with exit status ``status``, everything written:
    flush the output and leave through ``os._exit``, without the
    interpreter's teardown. TensorFlow's C++ runtime still has threads (its
    thread pools, XLA's) when Python and the C++ destructors free what they
    use; now and then (once in CI, once in about 340 interrupted runs of a
    stress run here) that race corrupted the heap, and a run whose image was
    safely written died of a glibc abort (status -6, "corrupted size vs.
    prev_size"). Without TensorFlow loaded (a mistake found before the run)
    there is nothing to race with, and the exit is the usual one."""
    if "tensorflow" not in sys.modules:
        raise SystemExit(status)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream
            stream.flush()
    os._exit(status)
