"""The command line: ``nst CONTENT STYLE [STYLE ...] -o OUT.png [options]``.

Defaults come from `nst.config` (the chosen preset). Inputs and settings are
checked before TensorFlow is imported, so mistakes are reported at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from nst import __version__
from nst.clips import (
    FRAME_NAME,
    VIDEO_SUFFIXES,
    finished_frames,
    frames_folder,
    open_clip,
    output_kind,
    run_record,
    save_animation,
)
from nst.config import (
    COLOR_MODES,
    DEVICES,
    FLOW_METHODS,
    INITS,
    MASK_MODES,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    PRESETS,
    VGG19_CONV_LAYERS,
    Config,
    ConfigError,
    VideoConfig,
    preset,
)
from nst.failure import BEFORE_RUN, DURING_RUN, Parser, Signals, describe, end, tolerant_output
from nst.images import (
    SAMPLE_PREFIX,
    SAMPLES,
    ImageError,
    cache_dir,
    check_output,
    check_source,
    free_path,
    load_image,
    read_metadata,
    reason,
    require_side,
    save_image,
    unpack_moments,
)
from nst.normalize import stats_images
from nst.resources import auto_tile, check_memory
from nst.weights import check_weights

#: An init image is test-decoded at this size before TensorFlow is imported.
MIN_CHECK_SIZE = 16
DEFAULT_OUTPUT = "stylized.png"
DEMO = (SAMPLE_PREFIX + "tubingen", SAMPLE_PREFIX + "starry_night")


def tile_side(value: str) -> int | str:
    """--tile's value: a whole number of pixels, or 'auto'."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a tile side: give pixels (e.g. 256) or 'auto'") from None


#: CLI flag -> (Config field, type, help). Each default shown is the report preset's.
OPTIONS: dict[str, tuple[str, Any, str]] = {
    "--size": ("size", int, "longest side of the output, pixels"),
    "--steps": ("steps", int, "optimiser steps"),
    "--content-weight": ("content_weight", float, "alpha, weight of the content loss"),
    "--style-weight": ("style_weight", float, "beta, weight of the style loss"),
    "--tv-weight": ("tv_weight", float, "gamma, weight of the total variation loss"),
    "--optimizer": ("optimizer", str, f"{' | '.join(OPTIMIZERS)}; with lbfgs, STEPS counts function evaluations"),
    "--lr": ("learning_rate", float, "Adam learning rate (pixels in [0, 1])"),
    "--lbfgs-memory": ("lbfgs_memory", int, "past steps L-BFGS remembers"),
    "--scales": ("scales", int, "coarse to fine: sizes to optimise at, smallest first; the last is the output size"),
    "--scale-steps": ("scale_steps", int, "steps at each scale (default: STEPS each)"),
    "--content-layers": ("content_layers", str, "VGG19 content layers"),
    "--style-layers": ("style_layers", str, "VGG19 style layers"),
    "--style-layer-weights": ("style_layer_weights", float, "w_l, one per style layer (default: 1/L each)"),
    "--style-blend": ("style_blend", float, "weight of each STYLE image (default: equal)"),
    "--style-scale": ("style_scale", float, "size of the style image relative to the output"),
    "--pooling": ("pooling", str, f"VGG19 pooling: {' | '.join(POOLINGS)}"),
    "--normalize": (
        "normalize",
        str,
        "the paper's normalised VGG19, each filter's mean activation made 1 over "
        "the sample images ('samples') or a FOLDER of images; 'off': Keras' VGG19 as it is",
    ),
    "--mask-mode": ("mask_mode", str, f"how --masks reach each style layer: {' | '.join(MASK_MODES)}"),
    "--preserve-color": ("preserve_color", str, f"keep the content's colours: {' | '.join(COLOR_MODES)}"),
    "--init": ("init", str, f"starting image: {' | '.join(INITS)} | PATH"),
    "--seed": ("seed", int, "seed for noise init and random weights; same seed, same PNG (default: none)"),
    "--max-pixels": ("max_pixels", int, "refuse input images with more pixels (decompression-bomb guard)"),
    "--device": ("device", str, f"where to run: {' | '.join(DEVICES)} (auto: a TPU, else a GPU, else the CPU)"),
    "--precision": ("precision", str, f"VGG19 arithmetic: {' | '.join(PRECISIONS)} (auto: 16-bit on GPU/TPU)"),
    "--tile": (
        "tile",
        tile_side,
        "compute in tiles that each own TILE px a side (plus a halo): memory follows "
        "the tile, not the output, and the result is the untiled one; 'auto': tiles only where the whole "
        "image would not fit in memory",
    ),
    "--weights": ("weights", str, "imagenet | random | PATH to a .h5/.npz (default: $NST_VGG19_WEIGHTS or imagenet)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nst",
        usage="nst CONTENT STYLE [STYLE ...] [-o OUT.png] [options]\n"
        "       nst --demo | --resume OUT.png [options]\n"
        "       nst video CLIP STYLE [STYLE ...] [-o OUT.mp4] [options]   (see nst video --help)\n"
        "       nst figures [--out DIR] [options]   (see nst figures --help)",
        description="Neural style transfer (Gatys et al. 2016): render CONTENT in the style of STYLE. "
        "`nst video` stylises a clip without flicker; `nst figures` remakes the report's and the paper's figures.",
        epilog=EPILOG,
    )
    parser.add_argument("content", nargs="?", help="content image: path, URL or sample:NAME")
    parser.add_argument("style", nargs="*", help="style image(s): path, URL or sample:NAME; several are blended")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, help="output PNG (default: %(default)s)")
    parser.add_argument("--resume", metavar="OUT.png", help="go on from a PNG that nst wrote, with its recorded "
                        "settings and inputs, for the steps it had left (or --steps); writes back to it unless -o")  # fmt: skip
    parser.add_argument("--demo", action="store_true", help=f"use the sample images {DEMO[0]} and {DEMO[1]}")
    add_settings(parser)
    parser.add_argument("--sweep", action="append", metavar="OPTION=V1,V2,...", help="one run per value, e.g. "
                        "--sweep style-weight=1e3,1e4,1e5 (repeat for a grid): optimised as one batch where only "
                        "weights, styles, init or seed differ; writes OUT-OPTION-VALUE.png for each")  # fmt: skip
    parser.add_argument("--save-every", type=int, metavar="N", help="also write OUT-STEP.png every N steps")
    parser.add_argument("--animate", metavar="ANIM", help="write the run as an animation: .gif, .mp4 or .webm "
                        "(a frame every --save-every steps, else 50 frames)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="where -o names an input, write beside it "
                        "(OUT-2.png) instead of refusing")  # fmt: skip
    add_switches(parser)
    return parser


EPILOG = (
    f"Samples: {', '.join(SAMPLE_PREFIX + s for s in SAMPLES)}. Layers: {' '.join(VGG19_CONV_LAYERS)}. Presets: "
    + " ".join(f"{name}: {p['description']}" for name, p in PRESETS.items())
)


def add_settings(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The options of a run's settings (`OPTIONS` but ``skip``, the preset,
    regions, XLA), each shown with the report preset's default."""
    defaults = Config()
    types = {f.name: str(f.type) for f in dataclasses.fields(Config)}
    parser.add_argument("--preset", choices=list(PRESETS), help="starting settings (default: report)")
    for flag, (name, kind, text) in OPTIONS.items():
        if flag in skip:
            continue
        default = getattr(defaults, name)
        shown = " ".join(default) if isinstance(default, tuple) else default
        many = types[name].startswith("tuple")  # a list of values on the command line
        parser.add_argument(flag, type=kind, nargs="+" if many else None, metavar=name.upper(),
                            help=f"{text} (report: {shown})" if default is not None else text)  # fmt: skip
    regions = parser.add_mutually_exclusive_group()
    regions.add_argument(
        "--masks",
        nargs="+",
        metavar="MASK",
        help="a style per region: one greyscale mask per "
        "style image, in order (white: that style; pixels no mask covers keep the content only)",
    )
    regions.add_argument(
        "--mask-map",
        metavar="MAP",
        help="a style per region from one image: one colour per style "
        "image, in the order the colours first appear from the top left (black: content only)",
    )
    parser.add_argument("--style-masks", nargs="+", metavar="MASK", help="with --masks or --mask-map: the part of "
                        "each style image to take its style from (white), one per style image")  # fmt: skip
    parser.add_argument("--no-xla", action="store_true", help="compile steps without XLA")


def add_switches(parser: argparse.ArgumentParser) -> None:
    """--quiet, --debug, --version."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"nst {__version__}")


def settings(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The Config the arguments ask for: the preset (or ``base``), then each flag given."""
    changes = {name: getattr(args, flag[2:].replace("-", "_"), None) for flag, (name, _, _) in OPTIONS.items()}
    changes = {k: v for k, v in changes.items() if v is not None and v != "auto"}  # --tile auto: see `run`
    if args.no_xla:
        changes["jit_compile"] = False
    if base is not None and args.preset is None:
        return base.replace(**changes)
    return preset(args.preset or "report", **changes)


def sweep(args: argparse.Namespace, config: Config) -> list[tuple[str, dict[str, Any], Config]]:
    """The runs that --sweep asks for: for every combination of its values,
    the output name's suffix, the settings that differ from ``config`` and
    the run's whole Config (checked now, before TensorFlow loads); [] without
    --sweep."""
    if not args.sweep:
        return []
    axes = []
    for item in args.sweep:
        name, _, values = item.partition("=")
        flag = "--" + name.removeprefix("--")
        field, kind, _ = OPTIONS.get(flag, (None, None, None))
        if field is None or not values or isinstance(getattr(config, field), tuple):
            single = ", ".join(f[2:] for f, (n, _, _) in OPTIONS.items() if not isinstance(getattr(config, n), tuple))
            raise ConfigError(f"--sweep {item}: give OPTION=V1,V2,... with one of these options: {single}")
        try:
            axes.append((flag[2:], field, [(raw, kind(raw)) for raw in values.split(",")]))
        except ValueError as e:
            raise ConfigError(f"--sweep {item}: {e}") from None
    runs = []
    for combination in itertools.product(*(values for _, _, values in axes)):
        suffix = "".join(f"-{name}-{raw}" for (name, _, _), (raw, _) in zip(axes, combination))
        changes = {field: value for (_, field, _), (_, value) in zip(axes, combination)}
        runs.append((suffix, changes, config.replace(**changes)))
    return runs


def resume(args: argparse.Namespace) -> Config:
    """Fill ``args`` from the PNG named by --resume; the Config that continues
    its run: its settings, started from its image, for the steps it had left
    (or --steps), written back to it (or -o)."""
    path = Path(args.resume)
    load_image(path, MIN_CHECK_SIZE)  # a readable image, or a clear error
    meta = read_metadata(path)  # a JSON object, or a clear error
    if "settings" not in meta:
        raise ImageError(f"{path}: records no settings, so it was not written by nst; cannot resume from it.")
    damaged = f"{path}: its nst record is damaged or from another program"
    styles = meta.get("styles", [meta.get("style")])
    sources = [meta.get("content"), *(styles if isinstance(styles, list) else [None])]
    if not all(isinstance(s, str) for s in sources) and not (args.content and args.style):
        raise ImageError(f"{damaged} (its inputs are not named); give CONTENT and STYLE to go on from it.")
    if any(s.startswith("<") for s in sources) and not (args.content and args.style):
        raise ImageError(f"{path}: its inputs were Python objects, not files; give CONTENT and STYLE to go on from it.")
    steps_done = meta.get("steps_done") or 0
    if not isinstance(steps_done, int) or isinstance(steps_done, bool) or steps_done < 0:
        raise ImageError(f"{damaged} (steps_done is {steps_done!r}); give CONTENT and STYLE to start afresh.")
    if not isinstance(meta["settings"], dict):
        raise ImageError(f"{damaged} (its settings are not a table); give CONTENT and STYLE to start afresh.")
    try:
        recorded = Config.from_dict(meta["settings"])
    except ConfigError as e:
        raise ImageError(f"{damaged} ({e}); give CONTENT and STYLE to start afresh.") from None
    if meta.get("adam") is not None:
        unpack_moments(meta["adam"], path)  # refused now, not after the run has loaded
    args.content, args.style = args.content or sources[0], args.style or sources[1:]
    if not (args.masks or args.mask_map):  # its regions, as recorded
        args.masks, args.mask_map = meta.get("masks"), meta.get("mask_map")
        args.style_masks = args.style_masks or meta.get("style_masks")
    if args.output == DEFAULT_OUTPUT:
        args.output = str(path)
    left = recorded.steps - steps_done
    # From its image, with Adam warm (a fresh Adam's first steps would climb
    # away from a converged image before coming back).
    base = recorded.replace(init=str(path.resolve()), scales=None, scale_steps=None, adam_warm_start=True,
                            steps=left if left > 0 else recorded.steps)  # fmt: skip
    args.resumed_from = {"path": str(path), "steps_done": steps_done}
    return settings(args, base)


def console() -> NoReturn:
    """The ``nst`` command (and ``python -m nst``): `main`, then `end` with
    its exit status."""
    end(main())


def main(argv: Sequence[str] | None = None) -> int:
    """``nst ...``: 0 when the run ends as asked, 1 when it stops early or
    fails during the run, 2 for a mistake found before it, 128 + the signal
    when interrupted; every failure is one line on stderr (``--debug`` adds
    the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    tolerant_output()
    command = "nst " + argv[0] if argv[:1] in (["figures"], ["video"]) else "nst"
    state = argparse.Namespace(running=False, written=[])
    with Signals() as signals:
        try:
            if command == "nst figures":
                return figures(argv[1:])
            if command == "nst video":
                return video(video_parser().parse_args(argv[1:]), signals, state)
            parser = build_parser()
            args = parser.parse_args(argv)
            if args.demo:
                args.content, args.style = args.content or DEMO[0], args.style or [DEMO[1]]
            if not (args.content and args.style) and not args.resume:
                parser.error("give CONTENT and STYLE images, --demo, or --resume OUT.png")
            return run(args, signals, state)
        except KeyboardInterrupt:
            kept = f"kept {', '.join(map(str, state.written))}" if state.written else "nothing was written"
            print(f"{command}: interrupted; {kept}", file=sys.stderr)
            return signals.status
        except Exception as e:  # every failure ends as one line
            if "--debug" in argv:
                traceback.print_exc()
            print(f"{command}: error: {describe(e)}", file=sys.stderr)
            return DURING_RUN if state.running else BEFORE_RUN


#: ``nst video`` flag -> (VideoConfig field, type, help).
VIDEO_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "--steps": ("frame_steps", int, "steps of each frame after the first (it starts from the last, warped)"),
    "--first-frame-steps": ("first_frame_steps", int, "steps of the first frame (default: the preset's steps)"),
    "--temporal-weight": ("temporal_weight", float, "weight of the temporal loss that holds each frame to the "
                          "previous one where the optical flow is trusted; 0: every frame on its own"),
    "--flow": ("flow", str, f"optical flow: {' | '.join(FLOW_METHODS)}"),
    "--fps": ("fps", float, "frames per second of the output (default: the clip's; 10 for a folder of frames)"),
    "--frames": ("frames", int, "stylise only the first FRAMES frames"),
}  # fmt: skip
DEFAULT_VIDEO_OUTPUT = "stylized.mp4"


def video_parser() -> argparse.ArgumentParser:
    """``nst video``'s options: a still run's settings and the video's (`VIDEO_OPTIONS`)."""
    parser = Parser(
        prog="nst video",
        usage="nst video CLIP STYLE [STYLE ...] [-o OUT.mp4 | OUT.gif | FOLDER] [options]",
        description="Stylise a clip (a video, an animated GIF or a folder of frames) without flicker (Ruder et "
        "al. 2016): each frame starts from the previous stylised frame warped by optical flow, and a temporal "
        "loss holds it there. Each frame is written as a PNG as soon as it is done (OUT-frames/, or into "
        "FOLDER); --resume goes on from them.",
        epilog=EPILOG,
    )
    parser.add_argument("clip", help="the clip: a video file (.mp4, .webm, ...), a .gif, or a folder of frames")
    parser.add_argument("style", nargs="+", help="style image(s): path, URL or sample:NAME; several are blended")
    parser.add_argument("-o", "--output", default=DEFAULT_VIDEO_OUTPUT, help="a video (with the clip's sound), a "
                        ".gif, or a folder for one PNG per frame (default: %(default)s)")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="go on from the frames an earlier run of the same "
                        "command left, at the first missing one")  # fmt: skip
    defaults = VideoConfig()
    for flag, (name, kind, text) in VIDEO_OPTIONS.items():
        default = getattr(defaults, name)
        parser.add_argument(flag, dest=name, type=kind, metavar=flag[2:].replace("-", "_").upper(),
                            help=f"{text} (default: {default})" if default is not None else text)  # fmt: skip
    add_settings(parser, skip=("--steps",))
    add_switches(parser)
    return parser


def video_settings(args: argparse.Namespace) -> VideoConfig:
    """The VideoConfig that ``nst video``'s arguments ask for."""
    changes = {name: getattr(args, name) for name, _, _ in VIDEO_OPTIONS.values() if getattr(args, name) is not None}
    return VideoConfig().replace(**changes)


def video(args: argparse.Namespace, signals: Signals, state: argparse.Namespace) -> int:
    """One ``nst video`` command: check everything, stylise the frames, write."""
    settings_of_video = video_settings(args)
    config = settings(args)
    clip = open_clip(args.clip)
    config = check_inputs(args, config, next(clip.frames()), args.clip)  # open_clip found at least one frame
    output = Path(args.output)
    kind = output_kind(output)
    inputs = {"clip": [args.clip], "style": list(args.style)}
    if kind != "folder":
        output = check_output(output, inputs)
    folder = frames_folder(output)
    if clip.kind == "folder" and folder.exists() and os.path.samefile(folder, args.clip):
        raise ImageError(f"{folder}: is the clip's folder, and nst never writes into an input; give another -o")
    check_output(folder / FRAME_NAME.format(1), inputs)
    record = run_record(args.clip, args.style, config, settings_of_video)
    done = finished_frames(folder, record, args.resume)
    count = min(clip.count, settings_of_video.frames or clip.count)
    if done >= count and kind == "folder":
        print(f"nst video: all {count} frames are in {folder} already")
        return 0

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm.auto import tqdm

    from nst.video import stylize_video

    frames = tqdm(total=count, initial=done, unit="frame", disable=args.quiet, dynamic_ncols=True, leave=False)
    steps = tqdm(unit="step", disable=args.quiet, dynamic_ncols=True, leave=False)

    def callback(p) -> None:
        if p.path is not None:
            frames.update(1)
            state.written.append(p.path)
        elif p.progress.step == 0 or steps.total != p.progress.steps:
            steps.reset(total=p.progress.steps)
            steps.set_description_str(f"frame {p.frame + 1}", refresh=False)
        else:
            steps.update(p.progress.step - steps.n)
            steps.set_postfix_str(f"loss {p.progress.losses['total']:.3g}", refresh=False)

    state.running = True
    try:
        result = stylize_video(args.clip, args.style, output, config=config, video=settings_of_video,
                               callback=callback, masks=args.masks or args.mask_map, style_masks=args.style_masks,
                               resume=args.resume)  # fmt: skip
    finally:
        steps.close()
        frames.close()
    made = len(result.frames) - result.resumed_at
    timing = ", ".join(f"{v:.1f} s" + {"first_frame": " the first frame", "frame": "/frame", "total": " in all"}[k]
                       for k, v in result.timings.items())  # fmt: skip
    if result.stopped:
        left = f"--resume goes on from frame {len(result.frames) + 1}"
        kept = len(result.frames)
        print(f"nst video: stopped ({result.stopped}); kept {kept} frame{'s' * (kept != 1)} in {folder} ({made} made "
              f"in this run); {left}", file=sys.stderr)  # fmt: skip
        return signals.status if result.stopped == "interrupted" else DURING_RUN
    h, w = load_image(result.frames[-1]).shape[:2]
    wrote = f"{result.output} and " if result.output else ""
    print(f"nst video: wrote {wrote}{len(result.frames)} frames in {folder} ({w}x{h}, {result.fps:g} fps; "
          f"{made} made here: {timing})")  # fmt: skip
    return 0


def figures(argv: list[str]) -> int:
    """``nst figures ...``: see `nst.figures`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nst.figures import main as figures_main

    return figures_main(argv)


def run(args: argparse.Namespace, signals: Signals, state: argparse.Namespace) -> int:
    """One ``nst`` command: check everything, run, write. ``state`` says
    whether the run has begun and what has been written so far."""
    config = resume(args) if args.resume else settings(args)
    if args.save_every is not None and args.save_every < 1:
        raise ConfigError(f"--save-every must be at least 1, got {args.save_every}")
    runs = sweep(args, config)
    if runs and (args.resume or args.animate or args.save_every):
        raise ConfigError("--sweep writes one PNG per run; it does not go with --resume, --animate or --save-every")
    config = check_inputs(args, config, args.content)
    masks = args.masks or args.mask_map
    output, paths, animation = outputs(args, config, [suffix for suffix, _, _ in runs])

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm.auto import tqdm

    from nst.optimize import Job, stylize, stylize_many

    total = sum(steps for _, steps in config.schedule)
    every_run = [run_config for _, _, run_config in runs] or [config]
    # The bar goes when the run ends (leave=False): the summary line below
    # says how it ended, and a log does not get the last state twice.
    bar = tqdm(total=sum(steps for c in every_run for _, steps in c.schedule), unit="step", disable=args.quiet,
               dynamic_ncols=True, leave=False)  # fmt: skip
    frame_every = args.save_every or max(1, total // 50)
    frames, done = [], {}

    def callback(progress) -> None:
        bar.set_postfix_str(f"loss {progress.losses['total']:.3g} content {progress.losses['content']:.3g} "
                            f"style {progress.losses['style']:.3g}", refresh=False)  # fmt: skip
        bar.update(progress.step - done.get(progress.job, 0))
        done[progress.job] = progress.step
        saving = args.save_every and progress.step % args.save_every == 0
        if saving or (animation and (progress.step % frame_every == 0 or progress.step == total)):
            image = progress.image()
            if animation:
                frames.append(image)
            if saving:
                frame = output.with_name(f"{output.stem}-{progress.step:05d}.png")
                with signals.holding():
                    state.written.append(
                        save_image(frame, image, {"settings": config.to_dict(), "step": progress.step})
                    )

    state.running = True
    try:
        if runs:
            jobs = [Job(args.content, args.style, changes, masks, args.style_masks) for _, changes, _ in runs]
            results = stylize_many(jobs, config=config, callback=callback)
        else:
            results = [stylize(args.content, args.style, config=config, callback=callback, masks=masks,
                               style_masks=args.style_masks)]  # fmt: skip
    finally:
        bar.close()
    with signals.holding():  # what was made is written whole, signal or not
        write_results(results, paths, args, state)
        if animation and frames:
            state.written.append(save_animation(animation, frames))
    stopped = [r.stopped for r in results if r is not None and r.stopped]
    if "interrupted" in stopped or None in results:
        return signals.status
    return DURING_RUN if stopped else 0


def check_inputs(args: argparse.Namespace, config: Config, content: Any, name: str | None = None) -> Config:
    """Check everything that can be checked before TensorFlow's slow import:
    the weights, the images (``content``, called ``name`` in errors), the
    memory the run needs, the masks; the config, with ``--tile auto``
    decided. The images are read again at each scale by `stylize`."""
    config.blend(len(args.style))
    check_weights(config.weights, config.content_layers + config.style_layers)
    if config.normalize:
        stats_images(config.normalize)
    first = config.schedule[0][0]
    image = require_side(load_image(content, first, config.max_pixels), config.min_side, name or content)
    height, width = (round(n * config.size / first) for n in image.shape[:2])
    if args.tile == "auto":
        config = config.replace(tile=auto_tile(config, height, width))
    if args.device in (None, "auto", "cpu"):
        check_memory(config, height, width)
    for source in args.style:
        style_size = max(round(first * config.style_scale), 1)
        require_side(load_image(source, style_size, config.max_pixels), config.min_side, source)
    if config.init not in INITS:
        try:
            load_image(config.init, MIN_CHECK_SIZE, config.max_pixels)
        except ImageError as e:
            raise ImageError(f"--init: {e} (give {', '.join(INITS)} or an image)") from None
    if args.style_masks and not (args.masks or args.mask_map):
        raise ConfigError("--style-masks go with --masks or --mask-map (the regions they fill)")
    for source in [*(args.masks or []), *([args.mask_map] if args.mask_map else []), *(args.style_masks or [])]:
        check_source(source)  # found and readable now; shapes are checked at load
    return config


def outputs(args: argparse.Namespace, config: Config, suffixes: list[str]) -> tuple[Path, list[Path], Path | None]:
    """The output PNG, the PNG of each run (one per sweep suffix, else the
    output) and the animation, checked before the run: the right kinds of
    file, in folders that take files, and never one of the inputs (with
    --force, beside it instead). --resume may write back into its own PNG:
    the old one stays until the new one is complete."""
    output = Path(args.output)
    if output.suffix.lower() != ".png":
        raise ConfigError(f"{output}: the output must be a .png file (it records the settings)")
    animation = Path(args.animate) if args.animate else None
    if animation and animation.suffix.lower() not in (".gif", *VIDEO_SUFFIXES):
        raise ConfigError(f"{animation}: --animate writes a .gif or a video ({', '.join(VIDEO_SUFFIXES)})")
    inputs = {"content": [args.content], "style": list(args.style)}
    for name in ("masks", "mask_map", "style_masks"):
        given = getattr(args, name)
        if given:
            inputs["--" + name.replace("_", "-")] = given if isinstance(given, list) else [given]
    if config.init not in INITS and not (args.resume and config.init == str(Path(args.resume).resolve())):
        inputs["--init"] = [config.init]
    output = check_output(output, inputs, force=args.force)
    paths = [check_output(output.with_name(f"{output.stem}{s}.png"), inputs, force=args.force) for s in suffixes]
    animation = animation and check_output(animation, {**inputs, "output": [output]}, force=args.force)
    return output, paths or [output], animation


def write_results(results: list, paths: list[Path], args: argparse.Namespace, state: argparse.Namespace) -> None:
    """Write each finished image and say so. A file that cannot be written
    (a full disk, a folder gone) is kept elsewhere, and the error says where."""
    failed = []
    for result, path in zip(results, paths):
        if result is None:
            print(f"nst: interrupted before {path} was started; not written")
            continue
        if args.resume:
            result.sources["resumed_from"] = args.resumed_from
        try:
            state.written.append(result.save(path))
        except OSError as e:
            failed.append(f"{path}: cannot be written ({e.strerror or reason(e)}); {rescue(result, path)}")
            continue
        h, w = result.best_image.shape[:2]
        meta = result.metadata()
        print(
            f"nst: wrote {path} ({w}x{h}, best of {meta['steps_done']} steps at step {result.best_step}); "
            + (f"loss {meta['start_loss']:.4g} -> {result.best_loss:.4g}; " if meta["start_loss"] is not None else "")
            + f"{result.timings['total']:.1f} s, {result.timings['step']:.3g} s/step on {result.device}"
            + (f"; stopped early: {result.stopped}" if result.stopped else "")
        )
    if failed:
        raise ImageError(failed[0] + (f" ({len(failed) - 1} more like it)" if len(failed) > 1 else ""))


def rescue(result: Any, path: Path) -> str:
    """Write ``result`` where it can go instead of ``path``; says where."""
    for folder in (cache_dir() / "rescued", Path(tempfile.gettempdir())):
        try:
            return f"the image is kept as {result.save(free_path(folder / path.name))}"
        except OSError:
            continue
    return "and it could not be kept anywhere else either"
