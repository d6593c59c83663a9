"""The command line: ``nst CONTENT STYLE [STYLE ...] -o OUT.png [options]``.

Defaults come from `nst.base.config` (the chosen preset). Inputs and settings are
checked before TensorFlow is imported, so mistakes are reported at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from nst.base.cache import cache_dir
from nst.base.config import (
    INITS,
    Config,
    ConfigError,
)
from nst.io.clips import (
    FRAME_NAME,
    VIDEO_SUFFIXES,
    finished_frames,
    frames_folder,
    open_clip,
    output_kind,
    run_record,
    save_animation,
)
from nst.io.images import (
    ImageError,
    check_output,
    free_path,
    load_image,
    reason,
    save_image,
)
from nst.io.jobs import Job
from nst.io.weights import (
    WEIGHTS_ENV,
    available_layers,
    check_weights,
    describe_weights,
    install,
    installed,
    installed_dir,
    resolve_weights,
)
from nst.modes.batch import pending, plan
from nst.modes.cluster import require_ray
from nst.run.preflight import preflight
from nst.ui.failure import BEFORE_RUN, DURING_RUN, Parser, Signals, end, explain, plain_warnings, tolerant_output
from nst.ui.options import (
    DEMO,
    batch_parser,
    build_parser,
    config_from,
    contents,
    in_flags,
    resume,
    sweep,
    video_parser,
    video_settings,
)


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
    command = "nst " + argv[0] if argv[:1] in (["figures"], ["video"], ["weights"], ["batch"]) else "nst"
    state = argparse.Namespace(running=False, written=[])
    with Signals() as signals, plain_warnings(command):
        try:
            if command == "nst figures":
                return figures(argv[1:])
            if command == "nst weights":
                return weights(argv[1:])
            if command == "nst video":
                return video(video_parser().parse_args(argv[1:]), signals, state)
            if command == "nst batch":
                return many(batch_parser().parse_args(argv[1:]), signals, state)
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
            print(f"{command}: error: {in_flags(explain(e))}", file=sys.stderr)
            return DURING_RUN if state.running else BEFORE_RUN


def video(args: argparse.Namespace, signals: Signals, state: argparse.Namespace) -> int:
    """One ``nst video`` command: check everything, stylise the frames, write."""
    settings_of_video = video_settings(args)
    config = config_from(args)
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

    from nst.modes.video import stylize_video

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
        result = stylize_video(
            args.clip,
            args.style,
            output,
            config=config,
            video=settings_of_video,
            callback=callback,
            masks=args.masks or args.mask_map,
            style_masks=args.style_masks,
            resume=args.resume,
        )
    finally:
        steps.close()
        frames.close()
    made = len(result.frames) - result.resumed_at
    timing = ", ".join(
        f"{v:.1f} s" + {"first_frame": " the first frame", "frame": "/frame", "total": " in all"}[k]
        for k, v in result.timings.items()
    )
    if result.stopped:
        left = f"--resume goes on from frame {len(result.frames) + 1}"
        kept = len(result.frames)
        print(
            f"nst video: stopped ({result.stopped}); kept {kept} frame{'s' * (kept != 1)} in {folder} ({made} made "
            f"in this run); {left}",
            file=sys.stderr,
        )
        return signals.status if result.stopped == "interrupted" else DURING_RUN
    h, w = load_image(result.frames[-1]).shape[:2]
    wrote = f"{result.output} and " if result.output else ""
    print(
        f"nst video: wrote {wrote}{len(result.frames)} frames in {folder} ({w}x{h}, {result.fps:g} fps; "
        f"{made} made here: {timing})"
    )
    return 0


def many(args: argparse.Namespace, signals: Signals, state: argparse.Namespace) -> int:
    """``nst batch``: plan every job, skip those done (before TensorFlow
    loads), run the rest (`nst.batch`, on a Ray cluster with --cluster); 1
    if any failed, with where they are listed."""
    if args.cluster:
        require_ray()
    if args.worker_cpus is not None and args.worker_cpus < 1:
        raise ConfigError(f"--worker-cpus {args.worker_cpus}: give 1 or more")
    config = config_from(args)
    runs = sweep(args, config) or [("", {}, config)]
    styles = [s.split("+") if "+" in s and not Path(s).exists() else s for s in args.styles]
    masks = args.masks or args.mask_map
    jobs = [
        Job(c, s, changes, masks, args.style_masks)
        for c in contents(args.content)
        for s in styles
        for _, changes, _ in runs
    ]
    todo = pending(plan(jobs, args.output, config))
    if not todo:
        print(f"nst batch: all {len(jobs)} jobs are done in {args.output} ({args.output}/batch.jsonl)")
        return 0
    for _, _, run_config in runs:
        check_weights(run_config.weights, run_config.content_layers + run_config.style_layers)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm.auto import tqdm

    from nst.modes.batch import batch

    bar = tqdm(total=len(todo), unit="job", disable=args.quiet, dynamic_ncols=True, leave=False)

    def progress(name: str, p: Any) -> None:
        bar.set_postfix_str(f"{name}: step {p.step}/{p.steps}, loss {p.losses['total']:.3g}")

    def ended(name: str, status: str) -> None:
        bar.update(status != "interrupted")
        if status != "failed":
            state.written.append(Path(args.output) / f"{name}.png")

    state.running = True
    try:
        report = batch(
            jobs,
            args.output,
            config=config,
            cluster=args.cluster,
            worker_cpus=args.worker_cpus,
            callback=progress,
            callback_every=10,
            on_job=ended,
        )
    finally:
        bar.close()
    done = len(jobs) - len(report.failures)
    print(f"nst batch: {len(report.results)} written, {len(report.skipped)} already done, into {args.output}")
    if report.failures:
        first = next(iter(report.failures.values()))
        print(
            f"nst batch: {len(report.failures)} of {len(jobs)} jobs failed ({done} done), the first: {in_flags(first)}; "
            f"every one is listed in {report.log}",
            file=sys.stderr,
        )
        return DURING_RUN
    return 0


def figures_parser() -> argparse.ArgumentParser:
    """The options of ``nst figures`` (loads `nst.modes.figures`, and so TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from nst.modes.figures import NAMES, FigureSettings

    defaults = FigureSettings()
    parser = Parser(prog="nst figures", description="Remake the report's and the paper's figures.")
    parser.add_argument("--out", default="figures", help="folder for the PNGs (default: %(default)s)")
    parser.add_argument("--size", type=int, help=f"longest side of each output (default: {defaults.size})")
    parser.add_argument("--steps", type=int, help=f"steps per run (default: {defaults.steps})")
    parser.add_argument("--weights", help="imagenet | random | PATH (default: $NST_VGG19_WEIGHTS or imagenet)")
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"some of: {' '.join(NAMES)}")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 64 px, 3 steps")
    return parser


def figures(argv: list[str]) -> int:
    """``nst figures [--out DIR] [--size N] [--steps N] [--weights W] [--only NAME ...] [--quick]``
    (see `nst.modes.figures`)."""
    args = figures_parser().parse_args(argv)
    from nst.modes.figures import NAMES, FigureSettings, make_figures

    given = {
        k: v for k, v in {"size": args.size, "steps": args.steps, "weights": args.weights}.items() if v is not None
    }
    settings = FigureSettings.quick(**given) if args.quick else FigureSettings(**given)
    Config(size=settings.size, steps=settings.steps).validate()  # a clear error before any run
    started = time.perf_counter()
    paths = make_figures(
        args.out, only=tuple(args.only or NAMES), settings=settings, log=lambda text: print(text, file=sys.stderr)
    )
    print(f"nst: wrote {len(paths)} files to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


def weights(argv: list[str]) -> int:
    """``nst weights [install PATH [--link]]``: say which VGG19 weights a run
    would use and why; or put a weights file into nst's cache, where every
    later run and notebook finds it (an offline machine's one set-up step)."""
    parser = argparse.ArgumentParser(prog="nst weights", description=weights.__doc__)
    commands = parser.add_subparsers(dest="command")
    add = commands.add_parser("install", help="copy (or link) a VGG19 .h5 or .npz file into nst's cache")
    add.add_argument("path", help="the weights file (checked first: layers, shapes, finite values)")
    add.add_argument("--link", action="store_true", help="link to the file instead of copying it")
    args = parser.parse_args(argv)
    if args.command == "install":
        target = install(args.path, link=args.link)
        print(
            f"nst weights: installed {describe_weights(target)} at {target}; it covers "
            f"{', '.join(available_layers(target))}"
        )
        return 0
    chosen = resolve_weights(None)
    why = (
        f"${WEIGHTS_ENV}"
        if os.environ.get(WEIGHTS_ENV)
        else f"installed in {installed_dir()}"
        if installed()
        else "nothing installed: Keras downloads them once (`nst weights install PATH` for offline machines)"
    )
    print(f"nst weights: {describe_weights(chosen)} ({why})")
    return 0


def run(args: argparse.Namespace, signals: Signals, state: argparse.Namespace) -> int:
    """One ``nst`` command: check everything, run, write. ``state`` says
    whether the run has begun and what has been written so far."""
    config = resume(args) if args.resume else config_from(args)
    if args.save_every is not None and args.save_every < 1:
        raise ConfigError(f"--save-every must be at least 1, got {args.save_every}")
    runs = sweep(args, config)
    if runs and (args.resume or args.animate or args.save_every):
        raise ConfigError("--sweep writes one PNG per run; it does not go with --resume, --animate or --save-every")
    config = check_inputs(args, config, args.content, sweeps=[changes for _, changes, _ in runs])
    masks = args.masks or args.mask_map
    output, paths, animation = outputs(args, config, [suffix for suffix, _, _ in runs])

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tqdm.auto import tqdm

    from nst.run.optimize import stylize, stylize_many

    total = config.schedule.total
    every_run = [run_config for _, _, run_config in runs] or [config]
    # The bar goes when the run ends (leave=False): the summary line below
    # says how it ended, and a log does not get the last state twice.
    bar = tqdm(
        total=sum(c.schedule.total for c in every_run),
        unit="step",
        disable=args.quiet,
        dynamic_ncols=True,
        leave=False,
    )
    frame_every = args.save_every or max(1, total // 50)
    frames, done = [], {}

    def callback(progress) -> None:
        bar.set_postfix_str(
            f"loss {progress.losses['total']:.3g} content {progress.losses['content']:.3g} "
            f"style {progress.losses['style']:.3g}",
            refresh=False,
        )
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
            results = [
                stylize(
                    args.content,
                    args.style,
                    config=config,
                    callback=callback,
                    masks=masks,
                    style_masks=args.style_masks,
                )
            ]
    finally:
        bar.close()
    with signals.holding():  # what was made is written whole, signal or not
        write_results(results, paths, args, state)
        if animation and frames:
            state.written.append(save_animation(animation, frames))
    stopped = [r.stopped for r in results if r is not None and not r.complete]
    if "interrupted" in stopped or None in results:
        return signals.status
    return DURING_RUN if stopped else 0


def check_inputs(
    args: argparse.Namespace, config: Config, content: Any, name: str | None = None, sweeps: Sequence[dict] = ()
) -> Config:
    """The run's job, and each run of a sweep (``sweeps``: their settings),
    checked before TensorFlow's slow import (`nst.run.preflight`), with
    ``content`` (called ``name`` in errors) and --tile auto decided."""
    masks = args.masks or args.mask_map
    for changes in sweeps:
        preflight(Job(content, args.style, changes, masks, args.style_masks), config, name=name)
    job = Job(content, args.style, masks=masks, style_masks=args.style_masks)
    return preflight(job, config, tile_auto=args.tile == "auto", name=name)


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
            + f"{result.timings['total']:.1f} s, {result.timings['step']:.3g} s/step on {result.device}; "
            + f"path: {result.settled}"
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
