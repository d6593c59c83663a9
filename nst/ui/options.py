"""The command line's options: the parsers of ``nst`` and ``nst video``, and
the settings they ask for (`settings`, `sweep`, `resume`), each default
taken from `nst.base.config`. Nothing here imports TensorFlow, so mistakes are
reported at once (`nst.ui.cli` runs what they ask).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import itertools
import os
import re
from pathlib import Path
from typing import Any

from nst import __version__
from nst.base.config import (
    FLOW_METHODS,
    OPTIONS,
    PRESETS,
    VGG19_CONV_LAYERS,
    Config,
    ConfigError,
    VideoConfig,
    preset,
)
from nst.core.moments import unpack_moments
from nst.io.images import (
    SAMPLE_PREFIX,
    SAMPLES,
    ImageError,
    load_image,
    read_metadata,
)
from nst.run.preflight import CHECK_SIZE
from nst.ui.failure import Parser

DEFAULT_OUTPUT = "stylized.png"


DEMO = (SAMPLE_PREFIX + "tubingen", SAMPLE_PREFIX + "starry_night")


#: Settings the command line gives by options of their own (no `OPTIONS` entry).
REGION_FLAGS = {"masks": "--masks or --mask-map", "style_masks": "--style-masks", "preset": "--preset"}


def in_flags(text: str) -> str:
    """A message of the library, which names settings as Python does
    (``tile=512``, ``style_masks``, ``init: ...``), as the command line says
    them (``--tile 512``, ``--style-masks``, ``--init: ...``)."""
    flags = {name: flag for flag, (name, _, _) in OPTIONS.items()} | REGION_FLAGS

    def flag(match: re.Match) -> str:
        return flags.get(match[1], match[1])

    def flag_value(match: re.Match) -> str:
        return f"{flags[match[1]]} {match[2]}".strip() if match[1] in flags else match[0]

    text = re.sub(r"\b([a-z][a-z0-9_]*)=([^\s),;]*[^\s),;.]|)", flag_value, text)
    text = re.sub(r"^([a-z][a-z0-9_]*)(?=:)", flag, text)  # a message about one setting
    return re.sub(r"(?<![-\w./])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b(?![-\w./(])", flag, text)  # lower_case names


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nst",
        usage="nst CONTENT STYLE [STYLE ...] [-o OUT.png] [options]\n"
        "       nst --demo | --resume OUT.png [options]\n"
        "       nst video CLIP STYLE [STYLE ...] [-o OUT.mp4] [options]   (see nst video --help)\n"
        "       nst batch CONTENT ... --styles STYLE ... -o OUTDIR [options]   (see nst batch --help)\n"
        "       nst figures [--out DIR] [options]   (see nst figures --help)\n"
        "       nst weights [install PATH [--link]]   (which VGG19 weights runs use; install a file for offline use)",
        description="Neural style transfer (Gatys et al. 2016): render CONTENT in the style of STYLE. "
        "`nst video` stylises a clip without flicker; `nst figures` remakes the report's and the paper's figures; "
        "`nst weights install PATH` makes a VGG19 weights file the default on a machine without internet.",
        epilog=EPILOG,
    )
    parser.add_argument("content", nargs="?", help="content image: path, URL or sample:NAME")
    parser.add_argument("style", nargs="*", help="style image(s): path, URL or sample:NAME; several are blended")
    parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, help="output PNG (default: %(default)s)")
    parser.add_argument(
        "--resume",
        metavar="OUT.png",
        help="go on from a PNG that nst wrote, with its recorded "
        "settings and inputs, for the steps it had left (or --steps); writes back to it unless -o",
    )
    parser.add_argument("--demo", action="store_true", help=f"use the sample images {DEMO[0]} and {DEMO[1]}")
    add_settings(parser)
    parser.add_argument(
        "--sweep",
        action="append",
        metavar="OPTION=V1,V2,...",
        help="one run per value, e.g. "
        "--sweep style-weight=1e3,1e4,1e5 (repeat for a grid): optimised as one batch where only "
        "weights, styles, init or seed differ; writes OUT-OPTION-VALUE.png for each",
    )
    parser.add_argument("--save-every", type=int, metavar="N", help="also write OUT-STEP.png every N steps")
    parser.add_argument(
        "--animate",
        metavar="ANIM",
        help="write the run as an animation: .gif, .mp4 or .webm (a frame every --save-every steps, else 50 frames)",
    )
    parser.add_argument(
        "--force", action="store_true", help="where -o names an input, write beside it (OUT-2.png) instead of refusing"
    )
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
    for flag, (name, parse, text) in OPTIONS.items():
        if flag in skip:
            continue
        default = getattr(defaults, name)
        if parse is bool:  # a switch: --xla / --no-xla
            shown = f" (report: {'on' if default else 'off'})" if default is not None else ""
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text + shown)
            continue
        shown = " ".join(default) if isinstance(default, tuple) else default
        many = types[name].startswith("tuple")  # a list of values on the command line
        parser.add_argument(
            flag,
            type=parse,
            nargs="+" if many else None,
            metavar=name.upper(),
            help=f"{text} (report: {shown})" if default is not None else text,
        )
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
    parser.add_argument(
        "--style-masks",
        nargs="+",
        metavar="MASK",
        help="with --masks or --mask-map: the part of "
        "each style image to take its style from (white), one per style image",
    )


def add_switches(parser: argparse.ArgumentParser) -> None:
    """--quiet, --debug, --version."""
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"nst {__version__}")


def config_from(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The Config the arguments ask for: the preset (or ``base``), then each flag given."""
    changes = {name: getattr(args, flag[2:].replace("-", "_"), None) for flag, (name, _, _) in OPTIONS.items()}
    changes = {k: v for k, v in changes.items() if v is not None and v != "auto"}  # --tile auto: see `run`
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
        if field is None or not values or kind is bool or isinstance(getattr(config, field), tuple):
            single = ", ".join(
                f[2:] for f, (n, k, _) in OPTIONS.items() if k is not bool and not isinstance(getattr(config, n), tuple)
            )
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
    load_image(path, CHECK_SIZE)  # a readable image, or a clear error
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
    # away from a converged image before coming back); its path settled
    # afresh (`nst.core.execution`: the PNG may come from another machine).
    base = recorded.replace(
        init=str(path.resolve()),
        scales=None,
        scale_steps=None,
        adam_warm_start=True,
        steps=left if left > 0 else recorded.steps,
        precision="auto",
        jit_compile=None,
        pooling_op=None,
    )
    args.resumed_from = {"path": str(path), "steps_done": steps_done}
    return config_from(args, base)


#: ``nst video`` flag -> (VideoConfig field, type, help).
VIDEO_OPTIONS: dict[str, tuple[str, Any, str]] = {
    "--steps": ("frame_steps", int, "steps of each frame after the first (it starts from the last, warped)"),
    "--first-frame-steps": ("first_frame_steps", int, "steps of the first frame (default: twice --steps)"),
    "--temporal-weight": (
        "temporal_weight",
        float,
        "weight of the temporal loss that holds each frame to the "
        "previous one where the optical flow is trusted; 0: every frame on its own",
    ),
    "--flow": ("flow", str, f"optical flow: {' | '.join(FLOW_METHODS)}"),
    "--fps": ("fps", float, "frames per second of the output (default: the clip's; 10 for a folder of frames)"),
    "--frames": ("frames", int, "stylise only the first FRAMES frames"),
}


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
    parser.add_argument(
        "-o",
        "--output",
        default=DEFAULT_VIDEO_OUTPUT,
        help="a video (with the clip's sound), a .gif, or a folder for one PNG per frame (default: %(default)s)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from the frames an earlier run of the same command left, at the first missing one",
    )
    defaults = VideoConfig()
    for flag, (name, kind, text) in VIDEO_OPTIONS.items():
        default = getattr(defaults, name)
        parser.add_argument(
            flag,
            dest=name,
            type=kind,
            metavar=flag[2:].replace("-", "_").upper(),
            help=f"{text} (default: {default})" if default is not None else text,
        )
    add_settings(parser, skip=("--steps",))
    add_switches(parser)
    return parser


def batch_parser() -> argparse.ArgumentParser:
    """``nst batch``'s options: the contents, the styles, the output folder, sweeps and a still run's settings."""
    parser = Parser(
        prog="nst batch",
        usage="nst batch CONTENT [CONTENT ...] --styles STYLE [STYLE ...] -o OUTDIR [--sweep OPTION=V1,V2,...] "
        "[options]",
        description="Many pictures: one run per content, style and sweep value, each written to "
        "OUTDIR/<content>--<style>[--<option>-<value>].png with its settings inside; OUTDIR/batch.jsonl lists every "
        "job and its status. The same command again skips the jobs already done with the same inputs and "
        "settings. Runs of one output shape share one compiled engine. A job that fails is recorded and the "
        "others go on.",
        epilog=EPILOG,
    )
    parser.add_argument(
        "content",
        nargs="+",
        help="content images: files, folders (the images in them), globs ('photos/*.jpg'; quoted), URLs or sample:NAME",
    )
    parser.add_argument(
        "--styles",
        nargs="+",
        required=True,
        metavar="STYLE",
        help="style images, a job each; A.jpg+B.jpg blends several in one job (weighed by --style-blend)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="the folder the PNGs and batch.jsonl go into (made if missing)",
    )
    parser.add_argument(
        "--sweep",
        action="append",
        metavar="OPTION=V1,V2,...",
        help="a job per value, e.g. --sweep style-weight=1e3,1e4 (repeat for a grid)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        default=os.environ.get("RAY_ADDRESS") or None,
        help="run the jobs on a Ray cluster (pip install 'nst[ray]'): auto (the one this machine "
        "is in), local (start Ray here: a worker per GPU), HOST:PORT or ray://HOST:10001 "
        "(default: $RAY_ADDRESS; unset: here, without Ray)",
    )
    parser.add_argument(
        "--worker-cpus",
        type=int,
        metavar="N",
        help="on a cluster without GPUs, the CPUs of each worker (default: all of a node's)",
    )
    add_settings(parser)
    add_switches(parser)
    return parser


#: What a folder given to `nst batch` is taken to hold: its files with these suffixes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def contents(given: list[str]) -> list[str]:
    """``nst batch``'s content images: each file as it is, a folder's images
    (sorted), a glob's matches (sorted); URLs and samples as given. A folder
    without images or a glob that matches nothing is an error."""
    found = []
    for item in given:
        if Path(item).is_dir():
            images = sorted(str(p) for p in Path(item).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ConfigError(f"{item}: a folder without images ({', '.join(IMAGE_SUFFIXES)})")
            found += images
        elif glob.has_magic(item) and not Path(item).exists():
            matches = sorted(glob.glob(item))
            if not matches:
                raise ConfigError(f"{item}: no file matches")
            found += matches
        else:
            found.append(item)
    return found


def video_settings(args: argparse.Namespace) -> VideoConfig:
    """The VideoConfig that ``nst video``'s arguments ask for."""
    changes = {name: getattr(args, name) for name, _, _ in VIDEO_OPTIONS.values() if getattr(args, name) is not None}
    return VideoConfig().replace(**changes)
