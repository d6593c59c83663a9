"""Settings of a style transfer run: one frozen dataclass, presets as data.

This module is the single place where defaults live. The API (`nst.stylize`),
the command line and the notebooks all read them from here. It imports
nothing heavy, so the CLI can validate settings before TensorFlow loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nst.base import geometry
from nst.base.checks import (
    Check,
    ConfigError,
    boolean,
    check_choice,
    check_integer,
    check_real,
    check_sequence,
    choice,
    each,
    integer,
    optional,
    real,
)
from nst.base.geometry import PAPER_STYLE_LAYERS, VGG19_CONV_LAYERS
from nst.base.presets import PRESETS
from nst.base.schedule import Schedule

#: How the losses are normalised: the report's formulas (the paper's), the
#: TensorFlow tutorial's (Gram divided by the number of positions, mean
#: squared errors), kept so the tutorial's numbers can be compared, the
#: authors' code's (the tutorial's, each style term divided by N_l^2), or
#: crowsonkb's 'scaled' (each term sum d^2 / sum |d|: weights that hold across sizes).
LOSS_FORMS = ("report", "tutorial", "gatys", "scaled")
#: Starting images by name; any other ``init`` is read as an image path or URL.
INITS = ("content", "style", "noise", "gray", "style-mean")
OPTIMIZERS = ("adam", "lbfgs")
POOLINGS = ("max", "avg", "l2")
#: How a style layer's statistics are compared: Gram matrices (the report's)
#: or the Wasserstein-2 distance between Gaussian fits (`nst.core.wasserstein`).
STYLE_LOSSES = ("gram", "w2")
#: The first convolution's padding: zeros (VGG19's) or the edge pixels repeated.
PADDINGS = ("zero", "replicate")
#: How the pooling is computed (the same values, at different speeds):
#: Keras' pooling layers or a reshape and a reduction (`nst.core.features.Pool2x2`).
POOLING_OPS = ("keras", "reshape")
DEVICES = ("auto", "tpu", "gpu", "cpu")
#: Arithmetic of the VGG19 pass. The mixed policies compute the convolutions
#: in 16 bits (fast on GPU tensor cores, TPUs and CPUs with AVX512_BF16 or
#: AMX, slow on other CPUs) and keep the weights, Gram matrices and losses in
#: float32; 'auto' lets `nst.core.execution` pick by measuring (see `Config.precision`).
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")
#: Gatys et al. 2017: transfer luminance only and keep the content's colours,
#: or first give the style image the content's colour mean and covariance.
COLOR_MODES = ("luminance", "histogram")
#: How a region's mask reaches each style layer (`nst.io.regions.layer_masks`).
MASK_MODES = ("propagate", "erode")
#: Optical flow between video frames (`nst.io.flow`): OpenCV's dense inverse
#: search or Farnebäck's method.
FLOW_METHODS = ("dis", "farneback")

MIN_SIZE, MAX_SIZE = 16, 8192
#: The smallest tile side (`Config.tile`), pixels.
MIN_TILE = 32
#: Larger input images are refused as possible decompression bombs (Pillow's
#: own warning threshold); `Config.max_pixels` / --max-pixels raise it.
MAX_PIXELS = 89_478_485
#: Upper bounds that keep every value inside what NumPy, SciPy and TensorFlow
#: take (a run of ten million steps is already weeks long).
MAX_STEPS, MAX_LBFGS_MEMORY, MAX_MAX_PIXELS = 10_000_000, 10_000, 2**40


class Role(enum.Enum):
    """What a setting does beside its own meaning. Each `Config` field names
    its roles where it is declared (`setting`); the lists that other modules
    keep (`named`) are read from there, never written out again."""

    PROGRAM = "changes a compiled program, beside the shapes and the device (`nst.core.engine`)"
    PER_IMAGE = "may differ between the images of one batch: each has its own (`nst.core.scene`)"
    STEERABLE = "a running live run takes it between two steps (`nst.run.live.LiveRun.set`)"
    TARGETS = "changes the style or content targets (`nst.core.targets`)"
    MEASURED = "open until `nst.core.execution` settles it by measuring; ``unmeasured`` where nothing is"


def setting(
    default: Any,
    *roles: Role,
    flag: str | None,
    parse: Callable[[str], Any] | None = None,
    help: str = "",
    unmeasured: Any = None,
    check: Check,
) -> Any:
    """A `Config` field: its default, its roles, its command-line option
    (``flag``, read by ``parse``, said by ``help``; None: no option of its
    own; ``bool`` options are switches, ``--xla`` / ``--no-xla``) and how a
    value of it is checked on its own (`Config.validate` adds the rules
    between settings)."""
    if flag is not None and (parse is None or not help):
        raise TypeError(f"{flag}: an option needs parse and help")
    metadata = {
        "roles": frozenset(roles),
        "flag": flag,
        "parse": parse,
        "help": help,
        "unmeasured": unmeasured,
        "check": check,
    }
    return dataclasses.field(default=default, metadata=metadata)


def pixels_or_auto(value: str) -> int | str:
    """A size given on the command line (--tile, --scales): a whole number of pixels, or 'auto'."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a size: give pixels (e.g. 256) or 'auto'") from None


def layers(name: str, value: Any) -> None:
    """VGG19 convolution layers by name."""
    check_sequence(name, value)
    for layer in value:
        if not isinstance(layer, str) or layer not in VGG19_CONV_LAYERS:
            raise ConfigError(f"unknown VGG19 layer {layer!r} in {name}; valid layers: {' '.join(VGG19_CONV_LAYERS)}")


def scale_sizes(name: str, value: Any) -> None:
    """'auto', None, or sizes (their order and last are `Config.validate`'s)."""
    if value is not None and value != "auto":
        each(integer(MIN_SIZE, MAX_SIZE))(name, value)


def blend(name: str, value: Any) -> None:
    """Weights >= 0 with a positive sum."""
    each(real(0))(name, value)
    if not value or sum(value) <= 0:
        raise ConfigError(f"{name} must be numbers >= 0 with a positive sum, got {list(value)}")


def normalization(name: str, value: Any) -> None:
    """'samples' or a folder: a name."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be 'samples', a folder of images or None, got {value!r}")


def start(name: str, value: Any) -> None:
    """One of `INITS`, or an image path or URL."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name} must be one of {', '.join(INITS)} or an image path")


def weights_file(name: str, value: Any) -> None:
    """'imagenet', 'random' or a path: a name."""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be 'imagenet', 'random' or a file path, got {value!r}")


def measured_switch(name: str, value: Any) -> None:
    """True or False (None, measured, is `optional`'s)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True, False or None (measured), got {value!r}")


@dataclass(frozen=True)
class Config:
    """Every setting of one style transfer run.

    The defaults are the report's (Gatys et al. 2016 with Adam): content
    layer ``block4_conv2``, style layers ``block1_conv1`` ... ``block5_conv1``
    with equal weights, ``alpha/beta = 1e-3``.
    """

    preset: str = setting("report", Role.PER_IMAGE, flag=None, check=choice(tuple(PRESETS)))
    """Name of the preset these settings started from (recorded in outputs)."""
    size: int = setting(
        512, flag="--size", parse=int, help="longest side of the output, pixels", check=integer(MIN_SIZE, MAX_SIZE)
    )
    """Longest side of the output image, in pixels."""
    steps: int = setting(500, flag="--steps", parse=int, help="optimiser steps", check=integer(1, MAX_STEPS))
    """Optimiser steps: Adam updates, or L-BFGS function evaluations."""
    content_weight: float = setting(
        1.0,
        Role.PER_IMAGE,
        Role.STEERABLE,
        flag="--content-weight",
        parse=float,
        help="alpha, weight of the content loss",
        check=real(0),
    )
    """alpha, the weight of the content loss."""
    style_weight: float = setting(
        1e3,
        Role.PER_IMAGE,
        Role.STEERABLE,
        flag="--style-weight",
        parse=float,
        help="beta, weight of the style loss",
        check=real(0),
    )
    """beta, the weight of the style loss."""
    tv_weight: float = setting(
        0.0,
        Role.PER_IMAGE,
        Role.STEERABLE,
        flag="--tv-weight",
        parse=float,
        help="gamma, weight of the total variation loss",
        check=real(0),
    )
    """gamma, the weight of the total variation loss (0 turns it off)."""
    content_layers: tuple[str, ...] = setting(
        ("block4_conv2",),
        Role.PROGRAM,
        Role.TARGETS,
        flag="--content-layers",
        parse=str,
        help="VGG19 content layers",
        check=layers,
    )
    """VGG19 layers whose activations the output must match to the content's."""
    style_layers: tuple[str, ...] = setting(
        PAPER_STYLE_LAYERS,
        Role.PROGRAM,
        Role.TARGETS,
        flag="--style-layers",
        parse=str,
        help="VGG19 style layers",
        check=layers,
    )
    """VGG19 layers whose Gram matrices the output must match to the style's."""
    style_layer_weights: tuple[float, ...] | None = setting(
        None,
        Role.PER_IMAGE,
        Role.STEERABLE,
        flag="--style-layer-weights",
        parse=float,
        help="w_l, one per style layer (default: 1/L each)",
        check=optional(each(real(0))),
    )
    """w_l per style layer; ``None`` means 1/L each."""
    loss_form: str = setting(
        "report",
        Role.PROGRAM,
        Role.TARGETS,
        flag="--loss-form",
        parse=str,
        help=f"how the terms are normalised: {' | '.join(LOSS_FORMS)} (scaled: each sum d^2 / sum |d|, weights that hold at any size)",
        check=choice(LOSS_FORMS),
    )
    """'report' (the paper's normalisation), 'tutorial' (the TF tutorial's),
    'gatys' (the authors' code's) or 'scaled' (crowsonkb's; see `nst.core.losses`)."""
    optimizer: str = setting(
        "adam",
        Role.PROGRAM,
        flag="--optimizer",
        parse=str,
        help=f"{' | '.join(OPTIMIZERS)}; with lbfgs, STEPS counts function evaluations",
        check=choice(OPTIMIZERS),
    )
    """'adam' (the report's) or 'lbfgs' (L-BFGS within [0, 1], the paper's and
    jcjohnson's choice: fewer evaluations to a given loss, no learning rate;
    `nst.core.optimizers.LBFGS`)."""
    learning_rate: float = setting(
        0.02,
        Role.STEERABLE,
        flag="--lr",
        parse=float,
        help="Adam learning rate (pixels in [0, 1])",
        check=real(0, inclusive=False),
    )
    """Adam's step size, in units of pixel values in [0, 1]."""
    beta_1: float = setting(0.9, Role.PROGRAM, flag=None, check=real(0, 1, high_inclusive=False))
    beta_2: float = setting(0.999, Role.PROGRAM, flag=None, check=real(0, 1, high_inclusive=False))
    epsilon: float = setting(1e-8, Role.PROGRAM, flag=None, check=real(0, inclusive=False))
    adam_warm_start: bool = setting(False, flag=None, check=boolean)
    """Go on with the Adam state that the ``init`` PNG records (every Adam
    output does; ``nst --resume`` sets this): a fresh Adam moves every pixel
    by about the learning rate at first, which from a nearly converged image
    climbs away before it comes back. Without a record Adam starts fresh."""
    lbfgs_memory: int = setting(
        20, flag="--lbfgs-memory", parse=int, help="past steps L-BFGS remembers", check=integer(1, MAX_LBFGS_MEMORY)
    )
    """How many past steps L-BFGS keeps to model the curvature."""
    scales: tuple[int, ...] | str | None = setting(
        None,
        flag="--scales",
        parse=pixels_or_auto,
        help="coarse to fine: sizes to optimise at, smallest first; the last is the output size; 'auto': from 128 px up by factors of sqrt(2), twice STEPS at the first",
        check=scale_sizes,
    )
    """Coarse to fine: the sizes to optimise at, smallest first; the last is
    ``size`` (setting only ``scales`` sets ``size`` to its last). Each scale
    starts from the previous result, upsampled. 'auto': crowsonkb's pyramid,
    from `AUTO_SMALLEST` px up by factors of sqrt(2) (`nst.base.schedule`), with
    `AUTO_FIRST_FACTOR` x the steps at the first scale. ``None``: only ``size``."""
    scale_steps: tuple[int, ...] | None = setting(
        None,
        flag="--scale-steps",
        parse=int,
        help="steps at each scale (default: STEPS each)",
        check=optional(each(integer(1, MAX_STEPS))),
    )
    """Steps at each scale; ``None``: ``steps`` at each (with 'auto' scales,
    `AUTO_FIRST_FACTOR` x as many at the first)."""
    scale_warm_start: bool = setting(
        False,
        flag="--scale-warm-start",
        parse=bool,
        help="coarse to fine: each later scale goes on with the last one's Adam moments, resized (crowsonkb's), or starts a fresh Adam",
        check=boolean,
    )
    """Coarse to fine with Adam: each later scale goes on with the previous
    scale's Adam moments, resized (the first bicubic, the second bilinear
    and at least 0; crowsonkb's), instead of a fresh Adam."""
    style_blend: tuple[float, ...] | None = setting(
        None,
        Role.PER_IMAGE,
        flag="--style-blend",
        parse=float,
        help="weight of each STYLE image (default: equal)",
        check=optional(blend),
    )
    """Weight of each style image in the blended Gram targets (normalised to
    sum to 1); ``None``: equal weights."""
    style_scale: float = setting(
        1.0,
        Role.PER_IMAGE,
        Role.TARGETS,
        flag="--style-scale",
        parse=float,
        help="size of the style image relative to the output",
        check=real(0, inclusive=False),
    )
    """Size of the style image relative to the output (0.5: half as large, so
    its brush strokes come out larger)."""
    pooling: str = setting(
        "max",
        Role.PROGRAM,
        Role.TARGETS,
        flag="--pooling",
        parse=str,
        help=f"VGG19 pooling: {' | '.join(POOLINGS)} (l2: x 0.78, crowsonkb's)",
        check=choice(POOLINGS),
    )
    """VGG19's pooling: 'max' (Keras'), 'avg' (the paper's) or 'l2' (each
    window's L2 norm x 0.78, crowsonkb's, scaled so that the deeper
    activations keep about max pooling's size); the same weights."""
    padding: str = setting(
        "zero",
        Role.PROGRAM,
        Role.TARGETS,
        flag="--padding",
        parse=str,
        help=f"the first convolution's padding: {' | '.join(PADDINGS)} (fewer edge artefacts)",
        check=choice(PADDINGS),
    )
    """The first convolution's padding: 'zero' (VGG19's) or 'replicate'
    (the edge pixels repeated: fewer artefacts along the picture's edges)."""
    style_loss: str = setting(
        "gram",
        Role.PROGRAM,
        Role.TARGETS,
        flag="--style-loss",
        parse=str,
        help=f"style statistics: {' | '.join(STYLE_LOSSES)} (w2: Wasserstein-2 between Gaussian fits, keeps colour and contrast apart)",
        check=choice(STYLE_LOSSES),
    )
    """'gram' (the loss form's Gram matrices) or 'w2': the Wasserstein-2
    distance between Gaussian fits of the features, which keeps the
    style's colour and contrast apart (see `nst.core.wasserstein`)."""
    ema: float = setting(
        0.0,
        Role.PROGRAM,
        flag="--ema",
        parse=float,
        help="decay of a moving average of Adam's iterates, which becomes the output (0: off; crowsonkb's 0.99 takes away Adam's grain)",
        check=real(0, 1, high_inclusive=False),
    )
    """Decay of an exponential moving average of Adam's iterates (0: off;
    crowsonkb's 0.99). The output, the preview and the next scale's start
    are the bias-corrected average, which has none of Adam's grain."""
    normalize: str | None = setting(
        None,
        Role.PROGRAM,
        Role.TARGETS,
        flag="--normalize",
        parse=str,
        help="the paper's normalised VGG19, each filter's mean activation made 1 over the sample images ('samples') or a FOLDER of images; 'off': Keras' VGG19 as it is",
        check=optional(normalization),
    )
    """The paper's normalised VGG19 (`nst.core.normalize`), each filter's mean
    activation made 1 over 'samples' (the sample images) or a folder of
    images, for the 'gatys' loss form only; ``None`` ('off'): Keras' VGG19."""
    mask_mode: str = setting(
        "propagate",
        Role.TARGETS,
        flag="--mask-mode",
        parse=str,
        help=f"how --masks reach each style layer: {' | '.join(MASK_MODES)}",
        check=choice(MASK_MODES),
    )
    """With regions (``masks``): how a mask reaches a style layer's resolution,
    'propagate' (through the receptive fields: soft borders) or 'erode'
    (resized, then a 3 x 3 minimum); see `nst.io.regions.layer_masks`."""
    preserve_color: str | None = setting(
        None,
        Role.PER_IMAGE,
        Role.TARGETS,
        flag="--preserve-color",
        parse=str,
        help=f"keep the content's colours: {' | '.join(COLOR_MODES)}",
        check=optional(choice(COLOR_MODES)),
    )
    """Keep the content's colours: 'luminance' or 'histogram' (``None``: off)."""
    init: str = setting(
        "content",
        Role.PER_IMAGE,
        flag="--init",
        parse=str,
        help=f"starting image: {' | '.join(INITS)} | PATH",
        check=start,
    )
    """Starting image: 'content', 'style' (resized to the output), 'noise'
    (uniform in [0, 1]), 'gray' or 'style-mean' (0.5, or the styles' mean
    colour, plus noise of one grey level), or the path or URL of an image."""
    seed: int | None = setting(
        None,
        Role.PER_IMAGE,
        flag="--seed",
        parse=int,
        help="seed for noise init and random weights; same seed, same PNG (default: none)",
        check=optional(integer(0, 2**32 - 1)),
    )
    """Seed for noise and random weights; with a seed the same inputs and
    settings give a bit-identical image on the same machine."""
    weights: str | None = setting(
        None,
        Role.PROGRAM,
        Role.TARGETS,
        flag="--weights",
        parse=str,
        help="imagenet | random | PATH to a .h5/.npz (default: $NST_VGG19_WEIGHTS, else the file `nst weights install` put in the cache, else imagenet)",
        check=optional(weights_file),
    )
    """'imagenet', 'random', or a path to a .h5/.npz file. ``None``: the
    file named by $NST_VGG19_WEIGHTS if set, else the one ``nst weights
    install`` put into the cache, else 'imagenet'."""
    jit_compile: bool | None = setting(
        None,
        Role.PROGRAM,
        Role.MEASURED,
        flag="--xla",
        parse=bool,
        help="compile steps with XLA, or not (default: whichever was measured faster)",
        unmeasured=True,
        check=optional(measured_switch),
    )
    """Compile each step with XLA (True) or run TensorFlow's own kernels
    (False); ``None``: whichever `nst.core.execution` measured faster here."""
    time_limit: float | None = setting(
        None,
        flag="--time-limit",
        parse=float,
        help="end the run after this many seconds of steps, with the best image so far",
        check=optional(real(0, inclusive=False)),
    )
    """End the run after this many seconds of steps, with the best image so
    far (coarse to fine: at the scale reached; ``Result.stopped`` says so)."""
    max_pixels: int = setting(
        MAX_PIXELS,
        Role.TARGETS,
        flag="--max-pixels",
        parse=int,
        help="refuse input images with more pixels (decompression-bomb guard)",
        check=integer(1, MAX_MAX_PIXELS),
    )
    """Input images with more pixels are refused (a decompression-bomb guard)."""
    device: str = setting(
        "auto",
        flag="--device",
        parse=str,
        help=f"where to run: {' | '.join(DEVICES)} (auto: a TPU, else a GPU, else the CPU)",
        check=choice(DEVICES),
    )
    """Where to run: 'auto' (a TPU, else a GPU, else the CPU), 'tpu', 'gpu' or 'cpu'."""
    precision: str = setting(
        "auto",
        Role.PROGRAM,
        Role.TARGETS,
        Role.MEASURED,
        flag="--precision",
        parse=str,
        help=f"VGG19 arithmetic: {' | '.join(PRECISIONS)} (auto: float32 or the device's 16-bit arithmetic, whichever was measured faster here)",
        unmeasured="float32",
        check=choice(PRECISIONS),
    )
    """'float32', 'mixed_float16', 'mixed_bfloat16' or 'auto' (see `PRECISIONS`):
    float32 or the device's fast 16-bit arithmetic, whichever `nst.core.execution`
    measured faster here with the same objective to 1%."""
    pooling_op: str | None = setting(
        None,
        Role.PROGRAM,
        Role.TARGETS,
        Role.MEASURED,
        flag="--pooling-op",
        parse=str,
        help=f"how pooling is computed: {' | '.join(POOLING_OPS)} (same values; default: whichever was measured faster here)",
        unmeasured="reshape",
        check=optional(choice(POOLING_OPS)),
    )
    """How the pooling is computed (see `POOLING_OPS`); ``None``: whichever
    `nst.core.execution` measured faster here."""
    tile: int | None = setting(
        None,
        Role.PROGRAM,
        flag="--tile",
        parse=pixels_or_auto,
        help="compute in tiles that each own TILE px a side (plus a halo): memory follows the tile, not the output, and the result is the untiled one; 'auto': tiles only where the whole image would not fit in memory",
        check=optional(integer(MIN_TILE, MAX_SIZE)),
    )
    """Evaluate VGG19 in tiles that each own this many output pixels a side
    (plus a halo), so memory follows the tile, not the output; the objective
    and its gradient are the untiled ones (`nst.core.tiles`). ``None``: untiled."""

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied and validated."""
        changes = _normalise(changes)
        scales = changes.get("scales")
        if isinstance(scales, tuple) and scales and scales[-1] != "auto" and "size" not in changes:
            changes["size"] = scales[-1]
        return dataclasses.replace(self, **changes).validate()

    def validate(self) -> Config:
        """Return ``self`` if every value is valid, else raise ConfigError.

        Every value is checked for its type first (a whole number, a finite
        real number, a name), so NaN, infinities, strings where numbers
        belong and out-of-range values all end here, never in a run."""
        for f in dataclasses.fields(self):
            f.metadata["check"](f.name, getattr(self, f.name))
        # The rules between settings.
        if self.ema and self.optimizer == "lbfgs":
            raise ConfigError("ema averages Adam's iterates, not L-BFGS's: use optimizer=adam or ema=0")
        if self.precision == "mixed_float16" and self.optimizer == "lbfgs":
            raise ConfigError("L-BFGS needs float32-range gradients: use precision float32 or mixed_bfloat16")
        if self.scales is not None and self.scales != "auto":
            if not self.scales or list(self.scales) != sorted(set(self.scales)) or self.scales[-1] != self.size:
                raise ConfigError(
                    f"scales must be increasing sizes ending at size={self.size}, got {list(self.scales)}"
                )
        sizes = Schedule.pyramid(self.size, self.steps, self.scales, None).sizes
        if self.scale_steps is not None and len(self.scale_steps) != len(sizes):
            raise ConfigError(f"scale_steps needs one value per scale ({len(sizes)})")
        if not MIN_SIZE <= self.size * self.style_scale <= MAX_SIZE:
            raise ConfigError(
                f"style_scale must keep the style image between {MIN_SIZE} and {MAX_SIZE} pixels "
                f"(size {self.size} x {self.style_scale})"
            )
        if not self.content_layers and not self.style_layers:
            raise ConfigError("give at least one content or style layer")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            raise ConfigError(
                f"style_layer_weights has {len(self.style_layer_weights)} values "
                f"but there are {len(self.style_layers)} style layers"
            )
        if self.normalize is not None and self.loss_form != "gatys":
            # Measured (8-bit weights, 96 px): on the normalised network the
            # report's style term starts at ~14 where Keras' VGG19 gives ~1e9,
            # so at its alpha/beta the first Adam step costs more content than
            # all the style there is, and the best image is the photo.
            raise ConfigError(
                f"normalize needs the gatys loss form, whose balance is set for the normalised network; the "
                f"{self.loss_form} form's weights are set for Keras' VGG19 and leave the photo unchanged: use "
                f"preset=gatys, which normalises over the samples"
            )
        return self

    @property
    def schedule(self) -> Schedule:
        """The scales a run climbs, smallest first (`nst.base.schedule`)."""
        return Schedule.pyramid(self.size, self.steps, self.scales, self.scale_steps)

    @property
    def min_side(self) -> int:
        """The shortest image side the chosen layers can take (`nst.base.geometry.min_side`)."""
        return geometry.min_side(self.content_layers + self.style_layers)

    @property
    def tile_margins(self) -> tuple[int, ...]:
        """How far beyond a tile's core VGG19's maps must be exact for the
        deepest layer used (`nst.base.geometry.margins`): (70, 68, 32, 12, 2)
        up to block5_conv1."""
        return geometry.margins(self.content_layers + self.style_layers)

    @property
    def tile_halo(self) -> int:
        """Pixels a tile reads on each side of what it owns: 70 px up to block5_conv1."""
        return self.tile_margins[0]

    def blend(self, styles: int) -> tuple[float, ...]:
        """The weight of each of ``styles`` style images, summing to 1."""
        weights = self.style_blend or (1.0,) * styles
        if len(weights) != styles:
            raise ConfigError(f"style_blend has {len(weights)} weights for {styles} style image(s)")
        return tuple(w / sum(weights) for w in weights)

    @property
    def layer_weights(self) -> tuple[float, ...]:
        """The style layer weights w_l actually used (1/L unless given)."""
        return self.style_layer_weights or tuple(1.0 / len(self.style_layers) for _ in self.style_layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Inverse of `to_dict` (unknown keys are refused)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**_normalise(values)).validate()


def named(role: Role) -> tuple[str, ...]:
    """The names of the `Config` fields that play ``role``, in their order."""
    return tuple(f.name for f in dataclasses.fields(Config) if role in f.metadata["roles"])


#: What each `Role.MEASURED` setting is where nothing was measured (short
#: runs, live runs, every test): nst's one path before it measured.
UNMEASURED = {
    f.name: f.metadata["unmeasured"] for f in dataclasses.fields(Config) if Role.MEASURED in f.metadata["roles"]
}
#: Command-line flag -> (Config field, how its value is read, its help).
OPTIONS = {
    f.metadata["flag"]: (f.name, f.metadata["parse"], f.metadata["help"])
    for f in dataclasses.fields(Config)
    if f.metadata["flag"] is not None
}


#: The first frame's steps, unless given, per later frame's.
FIRST_FRAME_FACTOR = 2


@dataclass(frozen=True)
class VideoConfig:
    """What `nst video` adds to a still run's settings (`Config`): each
    frame starts from the previous stylised frame warped onto it by optical
    flow, and a temporal loss holds it there where the flow is trusted
    (Ruder et al. 2016; `nst.modes.video`)."""

    temporal_weight: float = 1e5
    """The temporal loss's weight (`nst.core.losses.temporal_loss`, on the same
    scale as alpha); 0 turns it off, and each frame is then stylised on its
    own from its own content (so frames can run as batches). Larger weights
    hold the still parts of a clip steadier and leave the style less room to
    repair what warping loses (BENCHMARKS.md, "Numbers behind the code's choices")."""
    first_frame_steps: int | None = None
    """Steps of the first frame, which starts from ``init`` as a still does
    (with the run's ``scales``, coarse to fine, if any); ``None``:
    `FIRST_FRAME_FACTOR` x ``frame_steps``, since it starts from scratch
    where later frames start close to where they end."""
    frame_steps: int = 100
    """Steps of every later frame: they start close to where they end, at
    the output size (``scales`` apply to the first frame only)."""
    flow: str = "dis"
    """Optical flow method: one of `FLOW_METHODS`."""
    fps: float | None = None
    """Frames per second of the output; ``None``: the clip's (10 for a folder of frames)."""
    frames: int | None = None
    """Stylise only the first this many frames; ``None``: all."""

    @property
    def first_steps(self) -> int:
        """The first frame's steps: ``first_frame_steps``, or its default."""
        return self.first_frame_steps or min(MAX_STEPS, FIRST_FRAME_FACTOR * self.frame_steps)

    def replace(self, **changes: Any) -> VideoConfig:
        """A copy with ``changes`` applied and validated."""
        return dataclasses.replace(self, **changes).validate()

    def validate(self) -> VideoConfig:
        """Return ``self`` if every value is valid, else raise ConfigError."""
        check_real("temporal_weight", self.temporal_weight, 0)
        if self.first_frame_steps is not None:
            check_integer("first_frame_steps", self.first_frame_steps, 1, MAX_STEPS)
        check_integer("frame_steps", self.frame_steps, 1, MAX_STEPS)
        check_choice("flow", self.flow, FLOW_METHODS)
        if self.fps is not None:
            check_real("fps", self.fps, 0, 1000, inclusive=False)
        if self.frames is not None:
            check_integer("frames", self.frames, 1, MAX_STEPS)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return dataclasses.asdict(self)


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    """Lists to tuples, so configs stay hashable and compare equal; paths to
    strings; ``normalize`` 'off' or 'none' to None."""
    values = {
        k: tuple(v) if isinstance(v, list) else os.fspath(v) if isinstance(v, os.PathLike) else v
        for k, v in values.items()
    }
    if values.get("scales") == ("auto",):  # from the command line
        values["scales"] = "auto"
    if isinstance(values.get("normalize"), str) and values["normalize"].lower() in ("off", "none"):
        values["normalize"] = None
    return values


def preset(name: str = "report", **overrides: Any) -> Config:
    """The Config of preset ``name`` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return Config(preset=name).replace(**{**PRESETS[name]["settings"], **overrides})
