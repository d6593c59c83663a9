"""Runs: `stylize` and `stylize_many` (`optimize`), live runs you steer
(`live`), what a run records and reports (`record`: `Progress`, `Result`),
and whether a run fits in memory (`resources`)."""

from nst.base import submodules

__getattr__ = submodules(__name__)
