"""Scenes: a job's inputs made ready (jobs themselves are `nst.io.jobs`').

`Prepared.of` reads and checks everything a job needs before anything runs:
its full settings, its device, and at each scale of the run a `Scene`, the
inputs as the optimiser sees them. Regions (`nst.io.regions`) and the previous
video frame are given when a scene is made, never set on it afterwards.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nst.base.backend import tf
from nst.base.config import INITS, Config, ConfigError, Role, named
from nst.core.device import Device
from nst.core.device import current as current_device
from nst.io import color, regions
from nst.io.images import ImageError, ImageSource, load_image, require_side, source_name
from nst.io.jobs import Job, Previous, known, listed
from nst.io.weights import resolve_weights


def resize_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` resized (bicubic) to ``shape`` and clipped to [0, 1]."""
    if image.shape[:2] == tuple(shape):
        return image
    return tf.image.resize(image, shape, method="bicubic").numpy().clip(0, 1)


@dataclass(frozen=True, eq=False)
class Scene:
    """The inputs at one scale, as the optimiser sees them: full colour, or
    luminance only (one channel) when preserving colour that way."""

    content: np.ndarray
    styles: list[np.ndarray]
    rgb: np.ndarray
    """The content in colour (what a luminance-only output takes its colours from)."""
    mode: str | None
    regions: np.ndarray | None = None
    """With regions: each style image's region of the output, (styles, height, width)."""
    style_regions: tuple[np.ndarray | None, ...] = ()
    """With style masks: the part of each style image its style is taken from (None: all of it)."""
    previous: tuple[np.ndarray, np.ndarray, float] | None = None
    """For a video frame: the previous output warped onto it, where the flow
    is trusted, and the temporal weight, at this scale's size and channels."""

    @classmethod
    def load(
        cls,
        content: ImageSource,
        styles: list[ImageSource],
        config: Config,
        size: int,
        *,
        masks: Sequence[ImageSource] | ImageSource | None = None,
        style_masks: Sequence[ImageSource] | None = None,
        previous: Previous | None = None,
    ) -> Scene:
        """The scene at ``size``: each style image at ``size * style_scale``
        (its Gram targets are rescaled to the output's number of positions),
        colours as ``config.preserve_color`` asks, and the regions and the
        previous frame at this size."""
        rgb = require_side(load_image(content, size, config.max_pixels), config.min_side, content)
        style_size = max(round(size * config.style_scale), 1)
        style_rgbs = [require_side(load_image(s, style_size, config.max_pixels), config.min_side, s) for s in styles]
        mode, image = config.preserve_color, rgb
        if mode == "histogram":
            style_rgbs = [color.match_color(s, rgb) for s in style_rgbs]
        elif mode == "luminance":
            image = color.luminance(rgb)
            style_rgbs = [color.match_luminance(color.luminance(s), image) for s in style_rgbs]
        extra: dict[str, Any] = {}
        if masks is not None:
            extra["regions"] = regions.output_masks(masks, len(styles), *rgb.shape[:2])
            extra["style_regions"] = tuple(regions.style_regions(style_masks, style_rgbs))
        if previous is not None:
            warped = resize_to(previous.image, rgb.shape[:2])
            warped = color.luminance(warped) if mode == "luminance" else warped
            trusted = resize_to(previous.consistency[..., None], rgb.shape[:2])
            extra["previous"] = (warped.astype(np.float32), trusted.astype(np.float32), previous.weight)
        return cls(image, style_rgbs, rgb, mode, **extra)

    def start(self, config: Config) -> np.ndarray:
        """The starting image (see ``Config.init``; a video frame's is the
        previous output warped onto it), in the optimiser's channels."""
        shape = self.content.shape
        if self.previous is not None:
            return self.previous[0]
        if config.init == "content":
            return self.content
        if config.init == "noise":
            return np.random.default_rng(config.seed).uniform(0, 1, shape).astype(np.float32)
        if config.init in ("gray", "style-mean"):  # a flat colour and noise of one grey level (crowsonkb's)
            styles = np.stack([s.reshape(-1, s.shape[-1]).mean(axis=0) for s in self.styles])
            blend = np.array(config.blend(len(self.styles)))
            colour = 0.5 if config.init == "gray" else blend @ styles
            noise = np.random.default_rng(config.seed).uniform(0, 1 / 255, shape)
            return (colour + noise).astype(np.float32)
        if config.init == "style":
            first = self.styles[0]
        else:
            try:
                first = load_image(config.init, max(shape[:2]), config.max_pixels)
            except ImageError as e:
                raise ImageError(f"init: {e} (init is {', '.join(INITS)} or an image)") from None
            if self.mode == "luminance":
                first = color.luminance(first)
        return resize_to(np.clip(first, 0, 1), shape[:2])

    def present(self, image: np.ndarray) -> np.ndarray:
        """The optimised image as the RGB output (luminance + content chroma)."""
        return color.with_chroma(image, self.rgb) if self.mode == "luminance" else image

    def shapes(self) -> tuple:
        """What the scene gives a compiled program's shape: the image's, the
        number of regions, and whether it has a temporal target."""
        return self.content.shape, None if self.regions is None else len(self.regions), self.previous is not None


#: Settings in which the runs of one batch may differ: each image has its own.
PER_IMAGE = named(Role.PER_IMAGE)
DEFAULTS = Config()


@dataclass
class Prepared:
    """A job ready to run: its full settings, device, inputs at each scale."""

    index: int
    config: Config
    device: Device
    scenes: list[Scene]
    blend: tuple[float, ...]
    sources: dict[str, Any]

    @classmethod
    def of(cls, index: int, job: Job, base: Config) -> Prepared:
        """Job ``index`` with the shared settings ``base``: every input read and checked."""
        known(job.settings)
        config = base.replace(**job.settings)
        styles = listed(job.style)
        device = current_device(config.device)
        if device.kind == "TPU" and config.style_loss == "w2":
            raise ConfigError(
                "style_loss w2 takes its square roots in float64, which TPUs lack: use style_loss=gram "
                "there, or a GPU or CPU"
            )
        # Precision, XLA and the pooling op may stay open: `nst.core.execution` settles them when the run starts.
        config = repeatable(config, device).replace(weights=resolve_weights(config.weights))
        sources = {
            "content": source_name(job.content),
            "style": " + ".join(source_name(s) for s in styles),
            "styles": [source_name(s) for s in styles],  # what --resume reads back
        }
        if job.masks is not None:  # each style its own region (nst.io.regions)
            regions.check(job.masks, job.style_masks, len(styles), config)
            sources.update(regions.record(job.masks, job.style_masks))
        scenes = [
            Scene.load(
                job.content, styles, config, size, masks=job.masks, style_masks=job.style_masks, previous=job.previous
            )
            for size in config.schedule.sizes
        ]
        return cls(index, config, device, scenes, config.blend(len(styles)), sources)

    def on(self, settings: dict[str, Any]) -> Prepared:
        """This job with ``settings`` (a path: `nst.core.execution`) in its config."""
        return dataclasses.replace(self, config=self.config.replace(**settings))

    def batch_key(self) -> tuple:
        """Equal for jobs that can share a batch."""
        if self.config.optimizer == "lbfgs":
            return ("alone", self.index)
        shared = {name: getattr(DEFAULTS, name) for name in PER_IMAGE}
        if self.config.weights == "random":  # the seed picks the weights: it must agree
            del shared["seed"]
        return (dataclasses.replace(self.config, **shared), tuple(scene.shapes() for scene in self.scenes))


def repeatable(config: Config, device: Device) -> Config:
    """With a seed, make the run bit-identical on this machine.

    On CPU it already is (checked with and without XLA). GPU kernels may sum
    in any order, so there TensorFlow's op determinism is turned on, for the
    whole process, and XLA off (it has no deterministic max-pool gradient).
    """
    if config.seed is None or device.kind != "GPU":
        return config
    tf.config.experimental.enable_op_determinism()
    if config.jit_compile is not False:
        warnings.warn("seed on a GPU: deterministic ops on, XLA off, so steps are slower", stacklevel=3)
    return config.replace(jit_compile=False)
