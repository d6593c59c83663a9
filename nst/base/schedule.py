"""The pyramid a run climbs, apart from the step loop (pystiche's
``ImagePyramid``): its scales, smallest first, each a size and the steps
taken there. `nst.base.config.Config.schedule` makes it from the settings;
the run driver (`nst.run.driver`) walks it, and the images and targets take
each scale's size from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import NamedTuple

#: ``scales='auto'``: the smallest scale, and how many times ``steps`` it takes (crowsonkb's 1,000 and 500).
AUTO_SMALLEST, AUTO_FIRST_FACTOR = 128, 2


class Scale(NamedTuple):
    """One level of the pyramid: the image's longest side, and the steps
    (Adam updates, L-BFGS evaluations) taken at it."""

    size: int
    steps: int


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The scales of a run, smallest first; the last is the output size."""

    scales: tuple[Scale, ...]

    @classmethod
    def pyramid(
        cls, size: int, steps: int, scales: tuple[int, ...] | str | None, scale_steps: tuple[int, ...] | None
    ) -> Schedule:
        """The schedule the settings of the same names ask for (see
        `nst.base.config.Config.scales`): ``scales`` as given, or with 'auto'
        ``size / sqrt(2)^k`` (rounded) for each k that keeps it at least
        `AUTO_SMALLEST`, `AUTO_FIRST_FACTOR` x ``steps`` at the first; or only
        ``size``. ``scale_steps``, where given, are the steps of each."""
        if scales != "auto":
            sizes = tuple(scales or (size,))
        else:
            sizes, k = (), 0
            while round(size / 2 ** (k / 2)) >= min(AUTO_SMALLEST, size):
                sizes, k = (round(size / 2 ** (k / 2)), *sizes), k + 1
        counts = [steps] * len(sizes)
        if scales == "auto" and len(sizes) > 1:
            counts[0] = AUTO_FIRST_FACTOR * steps
        return cls(tuple(Scale(s, n) for s, n in zip(sizes, scale_steps or counts)))

    def __iter__(self) -> Iterator[Scale]:
        return iter(self.scales)

    def __len__(self) -> int:
        return len(self.scales)

    def __getitem__(self, index: int) -> Scale:
        return self.scales[index]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Each scale's size, smallest first."""
        return tuple(scale.size for scale in self.scales)

    @property
    def total(self) -> int:
        """The steps of all the scales."""
        return sum(scale.steps for scale in self.scales)

    def before(self, index: int) -> int:
        """The steps of the scales before scale ``index``."""
        return sum(scale.steps for scale in self.scales[:index])

    def is_end(self, index: int, k: int) -> bool:
        """Whether step ``k`` of scale ``index`` is the run's last."""
        return (index, k) == (len(self.scales) - 1, self.scales[-1].steps)

    def with_steps(self, index: int, steps: int) -> Schedule:
        """The same pyramid with ``steps`` at scale ``index``."""
        return Schedule(tuple(s._replace(steps=steps) if i == index else s for i, s in enumerate(self.scales)))
