"""Jobs: what one run of `nst.stylize_many` is made of (its images, its
settings, its masks, a video frame's link to the last), `grid` to make
many, and `settings`, how a call's keywords become a `Config`. Plain data,
without TensorFlow, so that `nst batch` can plan and skip work before
TensorFlow loads; `nst.core.scene` makes each job ready to run.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nst.base.config import Config, ConfigError, preset
from nst.io.images import ImageSource, check_source


@dataclass(frozen=True)
class Previous:
    """A video frame's link to the one before (`nst.modes.video`): the previous
    output warped onto this frame, where the flow is trusted, and the
    temporal weight."""

    image: np.ndarray
    """(height, width, 3) RGB in [0, 1], at the output size."""
    consistency: np.ndarray
    """(height, width) in [0, 1]: 1 where the flow can be trusted (`nst.io.flow.consistency`)."""
    weight: float


@dataclass(frozen=True)
class Job:
    """One run of `stylize_many`: its images, the settings in which it
    differs from the shared config (any `Config` field), its regions'
    masks, if any (see `stylize`), and for a video frame, the previous
    output warped onto it (`Previous`: the start and the temporal loss's
    target)."""

    content: ImageSource
    style: ImageSource | Sequence[ImageSource]
    settings: Mapping[str, Any] = field(default_factory=dict)
    masks: Sequence[ImageSource] | ImageSource | None = None
    style_masks: Sequence[ImageSource] | None = None
    previous: Previous | None = None

    def __post_init__(self) -> None:  # a missing file is reported now, not when its batch starts
        for source in self.images():
            check_source(source)

    def images(self) -> list[ImageSource]:
        """Every image the job reads: its content, styles, masks and style masks."""
        return [self.content, *listed(self.style), *listed(self.masks), *listed(self.style_masks)]


def listed(sources: Any) -> list:
    """``sources`` as a list: itself if a list or tuple, [] if None, else [it]."""
    return list(sources) if isinstance(sources, (list, tuple)) else [] if sources is None else [sources]


def grid(
    contents: Sequence[ImageSource], styles: Sequence[ImageSource | Sequence[ImageSource]], **axes: Sequence[Any]
) -> list[Job]:
    """A `Job` for every content, style and combination of the ``axes``'
    values, in that order; e.g. ``grid(["sample:tubingen"],
    ["sample:starry_night"], style_weight=[1e2, 1e3, 1e4])`` is three jobs."""
    combinations = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    return [Job(c, s, settings) for c in contents for s in styles for settings in combinations]


def config_for(config: Config | None, overrides: dict[str, Any]) -> Config:
    """``config`` (default: the report's) with ``overrides``; or the preset they name."""
    known(overrides)
    if "preset" in overrides:
        if config is not None:
            raise ValueError("give either config or preset, not both")
        return preset(overrides.pop("preset"), **overrides)
    return (config or Config()).replace(**overrides)


def known(changes: Mapping[str, Any]) -> None:
    """Refuse a setting `Config` does not have, naming the nearest that it does."""
    names = [f.name for f in dataclasses.fields(Config)]
    for name in changes:
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1)
            raise ConfigError(f"unknown setting {name!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
