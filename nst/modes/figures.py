"""The report's figure and the paper's figures, remade with one call.

``make_figures(out_dir)`` (and ``nst figures``) writes ten PNGs:

- ``report.png``: content | style | output, the report's figure;
- ``styles.png``: Tübingen in several styles, at the paper's ratios;
- ``ratio_layers.png``: the paper's grid, alpha/beta across, style layers down;
- ``networks.png``: Keras' VGG19 with the report's losses against the paper's
  normalised network with the authors' balance (the 'gatys' preset);
- ``regions.png``: a style per region (Gatys et al. 2017): the sky in one
  painting's style, the town in another's, with both ways of bringing the
  masks to the layers;
- ``init.png``: starting from the content, the style, and noise (several seeds);
- ``color.png``: plain, luminance-only and histogram-matched transfer (2017);
- ``loss.png``: loss curves against step and wall time, Adam and L-BFGS;
- ``recipes.png``: the report, gatys and scale-free presets (crowsonkb's
  recipe), each given the wall time that the scale-free run took;
- ``progress.png`` (and ``progress.gif``): one run at steps 0, 10, 50, 100, ...

With weights that cover only part of VGG19 (the block 1-3 file), every
figure keeps to the layers the weights have and says so in its title. Runs
with the same inputs and settings are made once and shared between figures.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nst import __version__
from nst.base.config import MAX_STEPS, PAPER_STYLE_LAYERS, PRESETS, Config, preset
from nst.io.clips import save_animation
from nst.io.images import (
    METADATA_KEY,
    SAMPLE_PREFIX,
    SAMPLES,
    ImageError,
    check_output,
    load_image,
    require_side,
    write_atomic,
)
from nst.io.regions import sky_mask
from nst.io.weights import available_layers, check_weights, describe_weights

NAMES = ("report", "styles", "ratio_layers", "networks", "regions", "init", "color", "loss", "recipes", "progress")

#: The paper's Figure 3: (style sample, alpha/beta) for Tübingen.
PAPER_STYLES = (("shipwreck", 1e-3), ("starry_night", 8e-4), ("the_scream", 5e-3), ("woman_with_hat", 5e-4))
#: alpha/beta of the paper's (and the report's) main results.
PAPER_RATIO = 1e-3
#: The paper's Figure 4 columns.
RATIOS = (1e-5, 1e-4, 1e-3, 1e-2)
#: alpha/beta at which the normalised network (the 'gatys' preset, sample
#: statistics) gives the paper's look: measured at 256 px, 300 L-BFGS steps.
NORMALIZED_RATIO = 1e-5
#: The painting for the town in `regions.png` (the sky takes the figures' style).
TOWN_STYLE = "the_scream"
#: What `recipes.png` says of each preset.
RECIPES = {
    "report": "½Σ(F−P)², Gram sums, Adam",
    "gatys": "normalised VGG19, means, L-BFGS",
    "scale-free": "Σd²/Σ|d|, W2, √2 pyramid, EMA",
}
#: Steps at which `progress.png` shows the image.
MILESTONES = (0, 10, 50, 100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class FigureSettings:
    """Everything the figures depend on, with their defaults."""

    size: int = 256
    """Longest side of each output, pixels (the grid's cells are half this)."""
    steps: int = 300
    """Optimiser steps per run."""
    weights: str | None = None
    """As `Config.weights` (None: $NST_VGG19_WEIGHTS, else ImageNet)."""
    content: str = SAMPLE_PREFIX + "tubingen"
    style: str = SAMPLE_PREFIX + "starry_night"
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the noise starts in `init.png`."""
    dpi: int = 110

    @classmethod
    def quick(cls, **changes: Any) -> FigureSettings:
        """A smoke-test size: 64 px (the grid's 32 px cells still fit
        block5's pooling), 3 steps, one noise seed."""
        return replace(cls(size=64, steps=3, seeds=(0,), dpi=60), **changes)

    @property
    def grid_size(self) -> int:
        """Longest side of the cells of `ratio_layers.png`: half the size."""
        return max(16, self.size // 2)


class Figures:
    """Makes the figures; remembers each run so figures can share it."""

    def __init__(self, settings: FigureSettings = FigureSettings(), log: Callable[[str], Any] = print) -> None:
        self.settings, self.log = settings, log
        layers = available_layers(settings.weights)
        self.partial = not set(PAPER_STYLE_LAYERS + ("block4_conv2",)) <= set(layers)
        # The paper's layers where the weights have them; else the 'blocks1-3'
        # preset, whose alpha/beta is ten times smaller than the paper's 1e-3
        # (checked by eye: the paper's ratios are mild at those layers). Every
        # ratio of a figure is scaled the same way.
        self.base = preset(
            "blocks1-3" if self.partial else "report",
            size=settings.size,
            steps=settings.steps,
            weights=settings.weights,
        )
        self.ratio_scale = (self.base.content_weight / self.base.style_weight) / PAPER_RATIO
        self.runs: dict[tuple, tuple[Any, dict[int, np.ndarray]]] = {}
        self.panels: list[dict[str, Any]] = []  # the runs of the figure being made

    # -- runs ---------------------------------------------------------------

    def run(
        self, content: str, style: str | tuple[str, ...], masks: np.ndarray | None = None, **changes: Any
    ) -> tuple[Any, dict[int, np.ndarray]]:
        """The result of one run and its images at `MILESTONES`, made once;
        with ``masks`` (one per style), a style per region."""
        from nst.run.optimize import stylize

        config = self.base.replace(**changes)
        key = (content, style, config, None if masks is None else masks.tobytes())
        if key not in self.runs:
            frames: dict[int, np.ndarray] = {}

            def keep(progress: Any) -> None:
                if progress.step in MILESTONES or progress.step == progress.steps:
                    frames[progress.step] = progress.image()

            started = time.perf_counter()
            result = stylize(
                content,
                list(style) if isinstance(style, tuple) else style,
                config=config,
                callback=keep,
                masks=None if masks is None else list(masks),
            )
            if result.stopped == "interrupted":  # Ctrl-C or SIGTERM ends the whole set, not this run alone
                raise KeyboardInterrupt
            regions = " with masks" if masks is not None else ""
            self.log(
                f"  run {_name(style)}{regions} {_describe_changes(changes)}: {time.perf_counter() - started:.1f} s"
            )
            self.runs[key] = (result, frames)
        self.panels.append(self.panel(content, style, config, masks is not None))
        return self.runs[key]

    def panel(self, content: str, style: str | tuple[str, ...], config: Config, masks: bool) -> dict[str, Any]:
        """How one run of a figure was made, as its PNG records it."""
        regions = {"masks": "sky, town (from the photo's colours)", "mask_mode": config.mask_mode} if masks else {}
        return {
            **regions,
            "content": content,
            "style": " + ".join(style) if isinstance(style, tuple) else style,
            "size": config.size,
            "steps": config.steps,
            "optimizer": config.optimizer,
            "content_layers": list(config.content_layers),
            "style_layers": list(config.style_layers),
            "alpha_over_beta": self.paper_ratio(config),
            "content_weight": config.content_weight,
            "style_weight": config.style_weight,
            "tv_weight": config.tv_weight,
            "init": config.init,
            "seed": config.seed,
            "preserve_color": config.preserve_color,
            "preset": config.preset,
            "normalize": config.normalize,
            "loss_form": config.loss_form,
            "style_layer_weights": list(config.layer_weights),
            "style_loss": config.style_loss,
            "ema": config.ema,
            "scales": config.scales,
            "time_limit": config.time_limit,
        }

    def ratio(self, alpha_over_beta: float) -> dict[str, float]:
        """Content and style weights for a ratio (scaled for partial weights)."""
        return {"content_weight": 1.0, "style_weight": float(f"{1.0 / (alpha_over_beta * self.ratio_scale):.6g}")}

    def paper_ratio(self, config: Config) -> float:
        """alpha/beta of ``config`` as the paper would state it (see `ratio`)."""
        return config.content_weight / config.style_weight / self.ratio_scale

    def title(self, what: str, config: Config | None = None, runs: str | None = None) -> str:
        """The figure's title: ``what``, then the size, ``runs`` (default: the
        steps and optimiser), the weights and the layers."""
        c = config or self.base
        runs = runs or f"{c.steps} {c.optimizer} steps"
        lines = [
            what,
            f"{c.size} px, {runs}, {describe_weights(c.weights)}",
            f"content {' '.join(c.content_layers)}, style {_layer_range(c.style_layers)}",
        ]
        if self.partial:
            lines.append("only VGG19 blocks 1-3 (partial weights): α/β shown are the paper's, used x0.1")
        return "\n".join(lines)

    # -- the figures ----------------------------------------------------------

    def report(self) -> Figure:
        s = self.settings
        result, _ = self.run(s.content, s.style)
        c = result.config
        fig, axes = _grid(1, 3, self.settings.dpi)
        for ax, image, label in zip(
            axes[0],
            (load_image(s.content, c.size), load_image(s.style, c.size), result.best_image),
            ("content", "style", f"output, α/β = {self.paper_ratio(c):.0e}"),
        ):
            _show(ax, image, label)
        fig.suptitle(self.title("The report's figure", c), fontsize=9)
        return fig

    def styles(self) -> Figure:
        s = self.settings
        styles = [(name, r) for name, r in PAPER_STYLES if name in SAMPLES]
        fig, axes = _grid(2, len(styles) + 1, self.settings.dpi)
        _show(axes[0][0], load_image(s.content, s.size), "content")
        axes[1][0].axis("off")
        for i, (name, r) in enumerate(styles, start=1):
            result, _ = self.run(s.content, SAMPLE_PREFIX + name, **self.ratio(r))
            _show(axes[0][i], result.best_image, f"α/β = {r:.0e}")
            _show(axes[1][i], load_image(SAMPLE_PREFIX + name, s.size // 2), SAMPLES[name][1].split(",")[1].strip())
        fig.suptitle(self.title("One photo, several styles (the paper's Fig. 3 ratios)"), fontsize=9)
        return fig

    def ratio_layers(self) -> Figure:
        s = self.settings
        usable = [layer for layer in PAPER_STYLE_LAYERS if layer in available_layers(s.weights)]
        rows = [tuple(usable[: i + 1]) for i in range(len(usable))]
        fig, axes = _grid(len(rows), len(RATIOS), self.settings.dpi)
        for i, layers in enumerate(rows):
            for j, r in enumerate(RATIOS):
                result, _ = self.run(
                    s.content, s.style, size=s.grid_size, style_layers=layers, style_layer_weights=None, **self.ratio(r)
                )
                _show(axes[i][j], result.best_image, f"α/β = {r:.0e}" if i == 0 else None)
            axes[i][0].set_ylabel(f"up to\n{layers[-1]}", fontsize=8)
            axes[i][0].axis("on")
            axes[i][0].set_xticks([])
            axes[i][0].set_yticks([])
        config = self.base.replace(size=s.grid_size)
        fig.suptitle(
            self.title("Content/style ratio (across) and style layers (down), the paper's Fig. 4", config), fontsize=9
        )
        return fig

    def networks(self) -> Figure:
        s = self.settings
        # The 'gatys' preset on the layers the weights have, at the figures'
        # size and steps.
        paper = {k: v for k, v in PRESETS["gatys"]["settings"].items() if k != "steps"}
        paper.update(
            preset="gatys",
            content_layers=self.base.content_layers,
            style_layers=self.base.style_layers,
            style_layer_weights=(1.0,) * len(self.base.style_layers),
        )
        panels = [
            ("report: Keras' VGG19", {}),
            ("gatys: normalised VGG19", {**paper, **self.ratio(PAPER_RATIO)}),
            ("gatys: normalised VGG19", {**paper, **self.ratio(NORMALIZED_RATIO)}),
        ]
        fig, axes = _grid(1, len(panels) + 1, self.settings.dpi)
        _show(axes[0][0], load_image(s.content, s.size), "content")
        for ax, (label, changes) in zip(axes[0][1:], panels):
            result, _ = self.run(s.content, s.style, **changes)
            _show(ax, result.best_image, f"{label}\nα/β = {self.paper_ratio(result.config):.0e}")
        what = (
            "The network. report: Keras' VGG19, the report's losses, Adam; gatys: VGG19 normalised over the "
            "sample images, the authors' balance, L-BFGS"
        )
        fig.suptitle(self.title(what), fontsize=9)
        return fig

    def regions(self) -> Figure:
        s = self.settings
        photo = load_image(s.content, s.size)
        sky = sky_mask(photo)
        styles = (s.style, SAMPLE_PREFIX + TOWN_STYLE)
        fig, axes = _grid(1, 4, self.settings.dpi)
        _show(axes[0][0], photo, "content")
        tint = np.where(sky[..., None] > 0.5, [0.35, 0.55, 1.0], [1.0, 0.55, 0.2])
        _show(axes[0][1], 0.45 * photo + 0.55 * tint, f"regions: sky {_name(s.style)}\ntown {TOWN_STYLE}")
        for ax, mode in zip(axes[0][2:], ("propagate", "erode")):
            result, _ = self.run(s.content, styles, masks=np.stack([sky, 1 - sky]), mask_mode=mode)
            _show(ax, result.best_image, f"masks {'propagated' if mode == 'propagate' else 'resized and eroded'}")
        fig.suptitle(self.title("A style per region (Gatys et al. 2017): guided Gram matrices"), fontsize=9)
        return fig

    def init(self) -> Figure:
        s = self.settings
        starts = [("content", {"init": "content"}), ("style", {"init": "style"})]
        starts += [(f"noise, seed {seed}", {"init": "noise", "seed": seed}) for seed in s.seeds]
        fig, axes = _grid(1, len(starts), self.settings.dpi)
        for ax, (label, changes) in zip(axes[0], starts):
            result, _ = self.run(s.content, s.style, **changes)
            _show(ax, result.best_image, f"from {label}\nloss {result.best_loss:.3g}")
        fig.suptitle(self.title("Starting image"), fontsize=9)
        return fig

    def color(self) -> Figure:
        s = self.settings
        modes = [("plain transfer", None), ("luminance only", "luminance"), ("histogram-matched style", "histogram")]
        fig, axes = _grid(1, len(modes) + 1, self.settings.dpi)
        _show(axes[0][0], load_image(s.content, s.size), "content")
        for ax, (label, mode) in zip(axes[0][1:], modes):
            result, _ = self.run(s.content, s.style, preserve_color=mode)
            _show(ax, result.best_image, label)
        fig.suptitle(self.title("Colour control (Gatys et al. 2017)"), fontsize=9)
        return fig

    def loss(self) -> Figure:
        s = self.settings
        fig = Figure(figsize=(11, 7.5), dpi=self.settings.dpi, layout="constrained")
        axes = fig.subplots(2, 2)
        for row, optimizer in enumerate(("adam", "lbfgs")):
            result, _ = self.run(s.content, s.style, optimizer=optimizer)
            h = result.history
            names = ["total", "content", "style", *(k for k in h if k.startswith("style/"))]
            for col, x in enumerate(("step", "time")):
                ax = axes[row][col]
                for name in names:
                    values = np.asarray(h[name], dtype=float)
                    ax.plot(
                        h[x],
                        np.where(values > 0, values, np.nan),
                        label=name,
                        linestyle=":" if name.startswith("style/") else "-",
                    )
                ax.set_yscale("log")
                ax.set_xlabel("step" if x == "step" else "wall time (s)")
                ax.set_title(
                    f"{'Adam' if optimizer == 'adam' else 'L-BFGS'}: loss against {ax.get_xlabel()}", fontsize=9
                )
                ax.legend(fontsize=7)
        fig.suptitle(self.title("Loss curves (style/<layer>: unweighted E_l)"), fontsize=9)
        return fig

    def progress(self) -> Figure:
        s = self.settings
        frames = self.run(s.content, s.style)[1]
        steps = sorted(frames)
        fig, axes = _grid(1, len(steps), self.settings.dpi)
        for ax, step in zip(axes[0], steps):
            _show(ax, frames[step], f"step {step}")
        fig.suptitle(self.title("One run as it goes"), fontsize=9)
        return fig

    def recipes(self) -> Figure:
        s = self.settings
        layers = {"content_layers": self.base.content_layers, "style_layers": self.base.style_layers}
        free = {
            **PRESETS["scale-free"]["settings"],
            **layers,
            "preset": "scale-free",
            "steps": max(1, s.steps // 2),
            "style_layer_weights": _leading(
                PRESETS["scale-free"]["settings"]["style_layer_weights"], len(self.base.style_layers)
            ),
        }
        recipe, _ = self.run(s.content, s.style, **free)
        seconds = recipe.history["time"][-1]  # from its first step to its last evaluation
        paper = {
            **PRESETS["gatys"]["settings"],
            **layers,
            "preset": "gatys",
            "style_layer_weights": (1.0,) * len(self.base.style_layers),
        }
        timed = {"steps": MAX_STEPS, "time_limit": max(seconds, 1e-3)}
        panels = [
            ("report", self.run(s.content, s.style, **timed)[0]),
            ("gatys", self.run(s.content, s.style, **{**paper, **timed})[0]),
            ("scale-free", recipe),
        ]
        fig, axes = _grid(1, len(panels) + 1, self.settings.dpi)
        _show(axes[0][0], load_image(s.content, s.size), "content")
        for ax, (name, result) in zip(axes[0][1:], panels):
            steps, took = int(result.history["step"][-1]), result.history["time"][-1]
            _show(ax, result.best_image, f"{name}: {RECIPES[name]}\n{steps} steps in {took:.0f} s")
        fig.suptitle(
            self.title("Three recipes in the same wall time", runs=f"{seconds:.0f} s of steps each"), fontsize=9
        )
        return fig

    # -- all of them -------------------------------------------------------------

    def check(self, only: tuple[str, ...] = NAMES) -> None:
        """Refuse now, before the first run, what a run of these figures
        could not use: every input at every size the figures need must be
        large enough for the deepest layer (block5 halves an image 4 times)."""
        unknown = [name for name in only if name not in NAMES]
        if unknown:
            raise ValueError(f"unknown figure(s) {', '.join(unknown)}; choose from: {', '.join(NAMES)}")
        s = self.settings
        check_weights(self.base.weights, self.base.content_layers + self.base.style_layers)
        sizes = {s.size, *((s.grid_size,) if "ratio_layers" in only else ())}
        styles = [s.style, *(SAMPLE_PREFIX + name for name, _ in PAPER_STYLES if name in SAMPLES and "styles" in only)]
        styles += [SAMPLE_PREFIX + TOWN_STYLE] if "regions" in only else []
        for size in sorted(sizes):
            config = self.base.replace(size=size)
            for source in (s.content, *styles):
                try:
                    require_side(load_image(source, size), config.min_side, source)
                except ImageError as e:
                    raise ImageError(f"figures at {size} px: {e}") from None

    def make(self, out: str | os.PathLike, only: tuple[str, ...] = NAMES) -> list[Path]:
        """Write the figures named in ``only`` into ``out``; returns the paths."""
        self.check(only)
        out = check_output(Path(out) / f"{only[0]}.png", {}).parent  # a folder that takes files, made if need be
        written = []
        for name in only:
            started = time.perf_counter()
            self.log(f"{name}.png ...")
            self.panels = []
            figure = getattr(self, name)()
            path = out / f"{name}.png"
            written.append(self.write(figure, path, name))
            if name == "progress":
                frames = self.run(self.settings.content, self.settings.style)[1]
                written.append(save_animation(out / "progress.gif", [frames[k] for k in sorted(frames)], fps=2))
            self.log(f"{name}.png written in {time.perf_counter() - started:.1f} s")
        return written

    def write(self, figure: Figure, path: Path, name: str) -> Path:
        """``figure`` as a PNG whose ``nst`` text chunk records how each of its
        panels was made (as `nst.io.images.read_metadata` reads it)."""
        weights = self.base.weights or "imagenet"
        record = {
            "nst_version": __version__,
            "figure": name,
            "weights": Path(weights).name,
            "panels": [dict(p) for p in {json.dumps(p, sort_keys=True): p for p in self.panels}.values()],
        }
        buffer = io.BytesIO()
        FigureCanvasAgg(figure).print_png(
            buffer, metadata={"Software": f"nst {__version__}", METADATA_KEY: json.dumps(record, sort_keys=True)}
        )
        write_atomic(path, buffer.getvalue())
        return path


def make_figures(
    out: str | os.PathLike,
    *,
    only: tuple[str, ...] = NAMES,
    settings: FigureSettings | None = None,
    log: Callable[[str], Any] = print,
) -> list[Path]:
    """Write the figures (all of `NAMES`, or ``only`` those) into ``out``."""
    return Figures(settings or FigureSettings(), log).make(out, only)


def _grid(rows: int, cols: int, dpi: int) -> tuple[Figure, list[list[Any]]]:
    fig = Figure(figsize=(2.6 * cols, 2.4 * rows + 0.6), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, [list(row) for row in axes]


def _show(ax: Any, image: np.ndarray, label: str | None) -> None:
    ax.imshow(np.clip(image, 0, 1))
    ax.axis("off")
    if label:
        ax.set_title(label, fontsize=8)


def _name(source: str | tuple[str, ...]) -> str:
    if isinstance(source, tuple):
        return " + ".join(map(_name, source))
    return source[len(SAMPLE_PREFIX) :] if source.startswith(SAMPLE_PREFIX) else Path(source).name


def _describe_changes(changes: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in changes.items()) or "(base settings)"


def _leading(weights: tuple[float, ...], count: int) -> tuple[float, ...]:
    """The first ``count`` of ``weights``, normalised to sum to 1 (a preset's layer weights on fewer layers)."""
    return tuple(w / sum(weights[:count]) for w in weights[:count])


def _layer_range(layers: tuple[str, ...]) -> str:
    return " ".join(layers) if len(layers) <= 2 else f"{layers[0]} ... {layers[-1]} ({len(layers)} layers)"
