"""The interactive studio: pick images, move sliders, press Run, watch.

``Studio(...).show()`` in a notebook (or a Voila page) gives:

- content and style pickers: the sample images, or an uploaded file; an
  optional second style, and a mask per style (`nst.regions`: white where
  that style goes), with the regions shown over the content;
- sliders for the content/style ratio alpha/beta (log scale), the total
  variation weight, the learning rate, steps, size and each style layer's
  weight; colour preservation and the optimiser;
- Run, Pause, Stop, Continue and Save buttons, a `nst.preview.LivePreview`
  of the run, and a strip of the runs made so far to compare and recall.

An Adam run is a live run (`nst.live`): moving alpha/beta, gamma, the
learning rate or a layer weight changes the running run from its next step
(the loss plot marks the step), and a new Run on the same size and layers
starts at once, without compiling again. Continue goes on from where a run
ended, with its Adam state. L-BFGS and coarse-to-fine runs go through
`nst.stylize` (not steerable). Runs go in a background thread, so the page
stays responsive; Stop ends a run at its next step and keeps the best image.
Every control is an attribute, so the studio can be driven from Python.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from nst.config import COLOR_MODES, OPTIMIZERS, Config, preset
from nst.failure import describe
from nst.images import SAMPLE_PREFIX, SAMPLES, ImageError, ImageSource, free_path, load_image, store_upload, to_pil
from nst.live import STEERABLE, LiveRun, start
from nst.optimize import Result, stylize
from nst.preview import THUMBNAIL, LivePreview, encode

UPLOAD = "(uploaded file)"
OFF = "off"
#: Save writes into this folder when set (`make studio` sets it to the
#: clone's out/), else into the current folder; never over an existing file.
OUTPUT_ENV = "NST_OUTPUT_DIR"


class Studio:
    """An ipywidgets UI around `nst.stylize`.

    Args:
        config: starting settings (default: the 'report' preset); every
            slider starts at its value.
        content, style: the starting inputs (sample names, paths, URLs...).
        **overrides: `Config` fields applied to ``config``, e.g.
            ``preset="blocks1-3", weights="vgg19.npz", size=256``.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        content: ImageSource = SAMPLE_PREFIX + "tubingen",
        style: ImageSource = SAMPLE_PREFIX + "starry_night",
        **overrides: Any,
    ) -> None:
        if "preset" in overrides:
            config = preset(overrides.pop("preset"), **overrides)
        self.config = (config or Config()).replace(**overrides)
        self.result = None
        self.error: BaseException | None = None
        self.live: LiveRun | None = None
        """The handle of the current (or last) Adam run: steered by the sliders."""
        self.runs: list[Result] = []
        """Every finished or stopped run, oldest first (the compare strip)."""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sources = {"content": content, "style": style}
        self.uploads: dict[str, dict[str, str]] = {}
        """Uploaded inputs by the path they are kept at: their name and SHA-256."""
        c = self.config
        label = {"description_width": "110px"}
        slider = {"continuous_update": False, "style": label, "layout": {"width": "420px"}}

        self.content_pick = _picker("content", content, label)
        self.style_pick = _picker("style", style, label)
        self.content_upload = _upload("content")
        self.style_upload = _upload("style")
        # Regions: a second style and a mask per style (one mask alone: its
        # style there, the content elsewhere; with two styles, one mask and
        # its complement will do).
        self.style2_pick = widgets.Dropdown(
            options=[("none", OFF), *_picker("style 2", SAMPLE_PREFIX + "the_scream", label).options],
            value=OFF, description="style 2", style=label, layout={"width": "300px"},
        )  # fmt: skip
        self.style2_upload = _upload("style2")
        self.mask_uploads = [_upload(f"mask{i}", f"mask {i}") for i in (1, 2)]
        self.clear_masks = widgets.Button(description="no masks", icon="times", layout={"width": "110px"})
        self.clear_masks.add_class("nst-clear-masks")
        self.regions_view = widgets.Image(format="png", layout={"width": "160px"})
        self.regions_view.add_class("nst-regions")
        self.masks: list[ImageSource | None] = [None, None]
        """The mask of each style (uploaded, or set from Python), or None."""
        self.ratio = widgets.FloatLogSlider(
            value=c.content_weight / c.style_weight if c.style_weight else 1.0,
            min=-8, max=0, step=0.25, description="α/β", readout_format=".1e", **slider,
        )  # fmt: skip
        self.ratio.add_class("nst-ratio")
        self.tv_on = widgets.Checkbox(value=c.tv_weight > 0, description="total variation", indent=False)
        # gamma from 1 (no visible effect) to 1e5 (a blur), measured at 256 px
        # on both presets (README, "The losses").
        self.tv_weight = widgets.FloatLogSlider(
            value=c.tv_weight or 100.0, min=0, max=5, step=0.25, description="TV weight γ", readout_format=".1e",
            **slider,
        )  # fmt: skip
        self.learning_rate = widgets.FloatLogSlider(
            value=c.learning_rate, min=-4, max=0, step=0.1, description="learning rate", readout_format=".3f", **slider
        )
        self.steps = widgets.IntSlider(value=c.steps, min=1, max=max(2000, c.steps), description="steps", **slider)
        self.size = widgets.IntSlider(
            value=c.size, min=32, max=max(1024, c.size), step=16, description="size (px)", **slider
        )
        self.layer_weights = [
            widgets.FloatSlider(value=w, min=0.0, max=1.0, step=0.05, description=name, **slider)
            for name, w in zip(c.style_layers, c.layer_weights)
        ]
        self.preserve_color = widgets.Dropdown(
            options=[OFF, *COLOR_MODES], value=c.preserve_color or OFF, description="keep colours", style=label,
            layout={"width": "260px"},
        )  # fmt: skip
        self.optimizer = widgets.Dropdown(
            options=list(OPTIMIZERS), value=c.optimizer, description="optimiser", style=label, layout={"width": "260px"}
        )
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play")
        self.pause_button = widgets.Button(description="Pause", icon="pause", disabled=True)
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.continue_button = widgets.Button(description="Continue", icon="forward", disabled=True,
                                              tooltip="more steps (the steps slider) from where the run is")  # fmt: skip
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.save_path = widgets.Text(value=str(default_output()), description="file", layout={"width": "460px"},
                                      style={"description_width": "30px"})  # fmt: skip
        for button in (self.run_button, self.pause_button, self.stop_button, self.continue_button, self.save_button):
            button.add_class(f"nst-{button.description.lower()}")
        for pick, upload in ((self.content_pick, self.content_upload), (self.style_pick, self.style_upload),
                             (self.style2_pick, self.style2_upload)):  # fmt: skip
            upload.observe(lambda _, pick=pick: setattr(pick, "value", UPLOAD), names="value")
        for i, upload in enumerate(self.mask_uploads):
            upload.observe(lambda _, i=i: self._mask_uploaded(i), names="value")
        self.clear_masks.on_click(lambda _: self.set_masks(None, None))
        self.run_button.on_click(lambda _: self.run())
        self.pause_button.on_click(
            lambda _: self.resume() if self.pause_button.description == "Resume" else self.pause()
        )
        self.stop_button.on_click(lambda _: self.stop())
        self.continue_button.on_click(lambda _: self.proceed())
        self.save_button.on_click(lambda _: self.save())
        # While an Adam run goes, these steer it: from its next step on.
        for control in (self.ratio, self.tv_on, self.tv_weight, self.learning_rate, *self.layer_weights):
            control.observe(lambda _: self._steer(), names="value")
        self.message = widgets.HTML("")
        self.message.add_class("nst-message")
        # The chosen inputs are shown at once, the output and the loss plot
        # as placeholders until the first step.
        self.preview = LivePreview(every=1, plot_every=10)
        self.strip = widgets.HBox([], layout={"flex_flow": "row wrap"})
        self.strip.add_class("nst-strip")
        self._show_inputs()
        for pick in (self.content_pick, self.style_pick, self.style2_pick):
            pick.observe(lambda _: self._show_inputs(), names="value")

        # Rows wrap in a narrow output area (Colab's), so nothing is cut off.
        wrap = {"flex_flow": "row wrap", "align_items": "flex-start"}
        inputs = widgets.HBox([widgets.HBox([self.content_pick, self.content_upload]),
                               widgets.HBox([self.style_pick, self.style_upload])], layout=wrap)  # fmt: skip
        regions = widgets.HBox([widgets.VBox([widgets.HBox([self.style2_pick, self.style2_upload]),
                                              widgets.HBox([*self.mask_uploads, self.clear_masks])]),
                                self.regions_view], layout=wrap)  # fmt: skip
        weights = widgets.VBox([widgets.HTML("<b>style layer weights w<sub>l</sub></b>"), *self.layer_weights])
        knobs = widgets.VBox(
            [self.ratio, widgets.HBox([self.tv_weight, self.tv_on]), self.learning_rate, self.steps, self.size]
        )
        buttons = widgets.HBox([self.run_button, self.pause_button, self.stop_button, self.continue_button,
                                self.save_button, self.save_path], layout=wrap)  # fmt: skip
        self.widget = widgets.VBox(
            [
                inputs,
                regions,
                widgets.HBox([knobs, weights], layout=wrap),
                widgets.HBox([self.preserve_color, self.optimizer], layout=wrap),
                buttons,
                self.message,
                self.preview.widget,
                self.strip,
            ]
        )
        self.widget.add_class("nst-studio")

    # -- what the controls say ------------------------------------------------

    def settings(self) -> Config:
        """The Config the controls describe now."""
        style_weight = self.config.content_weight / self.ratio.value
        return self.config.replace(
            style_weight=style_weight,
            tv_weight=self.tv_weight.value if self.tv_on.value else 0.0,
            learning_rate=self.learning_rate.value,
            steps=self.steps.value,
            size=self.size.value,
            scales=None,
            scale_steps=None,
            style_layer_weights=tuple(s.value for s in self.layer_weights),
            preserve_color=None if self.preserve_color.value == OFF else self.preserve_color.value,
            optimizer=self.optimizer.value,
        )

    def inputs(self) -> tuple[ImageSource, ImageSource | list[ImageSource]]:
        """The content and style images picked: a sample, a path, or the path
        an upload is kept at (see `nst.images.store_upload`); two styles
        when a second is picked."""
        content = self._chosen(self.content_pick, self.content_upload, self._sources["content"])
        style = self._chosen(self.style_pick, self.style_upload, self._sources["style"])
        if self.style2_pick.value == OFF:
            return content, style
        return content, [style, self._chosen(self.style2_pick, self.style2_upload, "")]

    def regions(self, styles: int) -> list[ImageSource] | None:
        """The masks for a run with ``styles`` style images (None: no
        regions): each style's mask; with two styles and one mask, the other
        is its complement."""
        given = self.masks[:styles]
        if not any(m is not None for m in given):
            return None
        if styles == 2 and None in given:
            known = 0 if given[0] is not None else 1
            given[1 - known] = _complement(given[known])
        return given

    def set_masks(self, *masks: ImageSource | None) -> None:
        """Set the mask of each style (a path, PIL image or array; None: no
        mask) and show the regions over the content."""
        self.masks = [*masks, None, None][:2]
        self._show_inputs()

    def _mask_uploaded(self, index: int) -> None:
        file = _uploaded(self.mask_uploads[index].value)
        if file is None:
            return
        try:
            path, digest = store_upload(*file)
        except ImageError as e:
            self._fail(e)
            return
        self.uploads[str(path)] = {"name": file[0], "sha256": digest}
        self.masks[index] = str(path)
        self._show_inputs()

    def _chosen(self, pick: widgets.Dropdown, upload: widgets.FileUpload, start: ImageSource) -> ImageSource:
        """The dropdown's choice; for the upload entry, the newest uploaded
        file (or the starting image when that was an object, not a name)."""
        if pick.value != UPLOAD:
            return pick.value
        file = _uploaded(upload.value)
        if file is None:
            if not isinstance(start, str):
                return start
            raise ImageError(f"{pick.description}: no file uploaded yet; upload one or pick a sample")
        name, data = file
        try:
            path, digest = store_upload(name, data)
        except ImageError as e:
            raise ImageError(f"{e} ({pick.description})") from None
        self.uploads[str(path)] = {"name": name, "sha256": digest}
        return str(path)

    # -- actions -------------------------------------------------------------

    def show(self) -> None:
        """Display the studio in the notebook (once: it updates in place)."""
        from IPython.display import display

        display(self.widget)

    def run(self, *, wait: bool = False) -> None:
        """Start a run with the current settings in the background (``wait``:
        block until it ends). Does nothing while a run is going."""
        if self.running:
            return
        try:
            config, (content, style) = self.settings(), self.inputs()
            masks = self.regions(len(style) if isinstance(style, list) else 1)
            self.preview.set_inputs(content, style)
        except Exception as e:  # a bad setting or image: say so in the UI
            self._fail(e)
            return
        self._stop.clear()
        self.error, self.live = None, None
        self._busy(True)
        self._say(f"running {config.steps} steps at {config.size} px, α/β = {self.ratio.value:.1e} …")
        self._start(self._work, content, style, config, masks)
        if wait:
            self.wait()

    def stop(self) -> None:
        """End the run at the next step; the best image so far is kept."""
        self._stop.set()
        if self.live is not None:
            self.live.stop()

    def pause(self) -> None:
        """Hold a running Adam run before its next step."""
        if self.live is not None and self.live.running:
            self.live.pause()
            self.pause_button.description, self.pause_button.icon = "Resume", "play"
            self._say(f"paused at step {self.live.step}")

    def resume(self) -> None:
        """Go on after `pause`."""
        if self.live is not None:
            self.live.resume()
            self.pause_button.description, self.pause_button.icon = "Pause", "pause"
            self._say(f"running from step {self.live.step} …")

    def proceed(self, steps: int | None = None, *, wait: bool = False) -> None:
        """After a run has ended or was stopped: ``steps`` more (default: the
        steps slider) from where it is, with the same Adam state."""
        if self.running or self.live is None:
            return
        self.error = None
        self._busy(True)
        self._say(f"continuing from step {self.live.step} …")
        self._start(self._work_more, steps or self.steps.value)
        if wait:
            self.wait()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run has ended."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the best image of the last run, with its settings, as a PNG,
        never over an existing file (``NAME-2.png``... instead). Uploaded
        inputs are copied beside it and the PNG names those copies (with the
        upload's name and SHA-256), so ``nst --resume`` can go on from it."""
        if self.result is None:
            self._say("nothing to save yet: press Run first")
            return None
        asked = Path(path or self.save_path.value).expanduser().resolve()
        if asked.suffix.lower() != ".png":
            self._say(f"<span style='color:#b00'>{asked}: give a .png file name (it records the settings)</span>")
            return None
        target = free_path(asked)
        try:
            written = dataclasses.replace(self.result, sources=self._kept_sources(target)).save(target)
        except (OSError, ImageError) as e:  # an unwritable folder, a full disk: the result stays here
            self._fail(e, "not saved: ")
            return None
        note = f" ({asked.name} exists and was kept)" if target != asked else ""
        self._say(f"saved <code>{written}</code>{note}{_offer(written)}")
        self.save_path.value = str(free_path(asked))
        return written

    def _kept_sources(self, target: Path) -> dict[str, Any]:
        """The result's sources, with each uploaded input (content, styles,
        masks) copied beside ``target`` and named by its copy."""
        sources = dict(self.result.sources)
        uploaded = {}
        lists = {"content": [sources["content"]], "style": list(sources.get("styles", [])),
                 "mask": list(sources.get("masks", []))}  # fmt: skip
        for role, names in lists.items():
            for index, source in enumerate(names):
                if source not in self.uploads:
                    continue
                name = f"{role}{'' if index == 0 and role != 'mask' else index + 1}"
                copy = target.with_name(f"{target.stem}-{name}{Path(source).suffix}")
                shutil.copyfile(source, copy)
                uploaded[name] = {**self.uploads[source], "kept_as": str(copy)}
                names[index] = str(copy)
        if uploaded:
            sources.update(content=lists["content"][0], styles=lists["style"], style=" + ".join(lists["style"]),
                           uploaded=uploaded)  # fmt: skip
            if "masks" in sources:
                sources["masks"] = lists["mask"]
        return sources

    # -- the background run ---------------------------------------------------

    def _start(self, work: Any, *args: Any) -> None:
        self._thread = threading.Thread(target=self._finish, args=(work, *args), daemon=True, name="nst-studio")
        self._thread.start()

    def _work(self, content: ImageSource, style: ImageSource, config: Config, masks: list | None) -> Result:
        """One run: a live Adam run (steerable, warm after the first), else `nst.stylize`."""
        if self._live_ok(config):
            self.live = start(content, style, config=config, callback=self._progress, masks=masks)
            self.preview.marks = self.live.changes
            if self._stop.is_set():  # Stop was pressed while the run was being set up
                self.live.stop()
            return self.live.result()
        self.live = None
        return stylize(content, style, config=config, callback=self._progress, masks=masks)

    def _work_more(self, steps: int) -> Result:
        self.live.proceed(steps)
        return self.live.result()

    def _progress(self, progress: Any) -> None:
        if self._stop.is_set() and self.live is None:
            raise KeyboardInterrupt  # stylize ends the run and keeps the best image
        self.preview(progress)

    def _finish(self, work: Any, *args: Any) -> None:
        """Run ``work`` (in the background thread), then show how it ended."""
        started = time.perf_counter()
        try:
            self.result = work(*args)
            self.preview.finish(self.result)
            self._keep(self.result)
            how = "stopped" if self.result.stopped else "finished"
            said = (f"{how} at step {self.result.metadata()['steps_done']} after "
                    f"{time.perf_counter() - started:.0f} s on {self.result.device}")  # fmt: skip
        except KeyboardInterrupt:
            said = "stopped before the first step"
        except Exception as e:  # shown in the UI: nobody sees a thread's traceback
            self.error = e
            said = _error(e, "run failed: ")
        # The buttons first: whoever reads the message can press Run again.
        self._busy(False)
        self._say(said)

    @staticmethod
    def _live_ok(config: Config) -> bool:
        return config.optimizer == "adam" and config.scales is None and config.precision != "mixed_float16"

    def _steer(self) -> None:
        """Send the sliders' weights and learning rate to the running run."""
        if self.live is None or not self.live.running:
            return
        try:
            c = self.settings()
        except Exception as e:  # a bad value: say so, keep the run as it is
            self._fail(e)
            return
        self.live.set(**{name: getattr(c, name) for name in STEERABLE})
        self._say(f"running at {c.size} px, α/β = {self.ratio.value:.1e} from step {self.live.step + 1} …")

    # -- the compare strip ------------------------------------------------------

    def _keep(self, result: Result) -> None:
        """A thumbnail of a finished or stopped run, with its settings on
        hover; its button puts them back on the sliders and shows it beside
        the current image."""
        self.runs.append(result)
        index = len(self.runs)
        c = result.config
        summary = (f"run {index}: α/β {c.content_weight / c.style_weight:.1e}, γ {c.tv_weight:g}, lr {c.learning_rate:g}, "
                   f"{result.metadata()['steps_done']} steps, {c.size} px, loss {result.best_loss:.3g}")  # fmt: skip
        thumbnail = widgets.Image(value=encode(result.best_image, "jpeg"), format="jpeg", layout={"width": "96px"})
        button = widgets.Button(description=f"run {index}", tooltip=summary, layout={"width": "96px"})
        button.add_class("nst-recall")
        button.on_click(lambda _: self.recall(index - 1))
        self.strip.children = (*self.strip.children, widgets.VBox([thumbnail, button]))

    def recall(self, index: int) -> None:
        """Put run ``index``'s settings back on the sliders and show its image
        beside the current one (the compare view)."""
        result = self.runs[index]
        c = result.config
        self.ratio.value = c.content_weight / c.style_weight if c.style_weight else 1.0
        self.tv_on.value = c.tv_weight > 0
        if c.tv_weight > 0:
            self.tv_weight.value = c.tv_weight
        self.learning_rate.value, self.size.value = c.learning_rate, c.size
        for slider, w in zip(self.layer_weights, c.layer_weights):
            slider.value = w
        self.preview.compare(result.best_image, f"run {index + 1}")

    def _show_inputs(self) -> None:
        """Show the picked inputs in the preview, and the regions over the
        content (an upload not yet made: unchanged)."""
        try:
            content, style = self.inputs()
            self.preview.set_inputs(content, style)
            masks = self.regions(len(style) if isinstance(style, list) else 1)
            self.regions_view.value = encode(_regions_over(content, masks), "png") if masks else b""
        except ValueError as e:  # ImageError and ConfigError: the inputs stay as they were
            if any(m is not None for m in self.masks):
                self._fail(e)

    def _busy(self, running: bool) -> None:
        self.run_button.disabled = running
        self.stop_button.disabled = not running
        self.pause_button.disabled = not running or self.optimizer.value != "adam"
        self.pause_button.description, self.pause_button.icon = "Pause", "pause"
        self.continue_button.disabled = running or self.live is None
        self.save_button.disabled = running or self.result is None

    def _fail(self, error: BaseException, prefix: str = "") -> None:
        self.error = error
        self._say(_error(error, prefix))

    def _say(self, html: str) -> None:
        self.message.value = html


def _offer(path: Path) -> str:
    """Hand the PNG to the browser too: Colab's own download in Colab (its
    files live on a remote machine), else a download link (HTML to add to
    the message)."""
    if "google.colab" in sys.modules:
        from google.colab import files

        files.download(str(path))
        return " (downloading)"
    data = base64.b64encode(path.read_bytes()).decode()
    return f' · <a download="{html.escape(path.name)}" href="data:image/png;base64,{data}">download</a>'


def default_output() -> Path:
    """Where Save writes unless told: a free ``stylized.png`` in $NST_OUTPUT_DIR, else here."""
    return free_path(Path(os.environ.get(OUTPUT_ENV) or ".").expanduser().resolve() / "stylized.png")


def _picker(role: str, source: ImageSource, style: dict[str, str]) -> widgets.Dropdown:
    """A dropdown of the samples, plus the starting source and uploads."""
    options = [(name, SAMPLE_PREFIX + name) for name in SAMPLES]
    if isinstance(source, str) and source not in dict(options).values():
        options.insert(0, (Path(source).name, source))
    value = source if isinstance(source, str) else UPLOAD
    return widgets.Dropdown(options=[*options, (UPLOAD, UPLOAD)], value=value, description=role, style=style,
                            layout={"width": "300px"})  # fmt: skip


def _upload(role: str, description: str = "upload") -> widgets.FileUpload:
    """An upload button for one input; picking a file selects it in the dropdown."""
    upload = widgets.FileUpload(accept="image/*", multiple=False, description=description, icon="upload",
                                layout={"width": "110px"})  # fmt: skip
    upload.add_class(f"nst-upload-{role}")
    return upload


def _complement(mask: ImageSource) -> str:
    """A mask's complement (white where it is black), kept like an upload."""
    grey = load_image(mask).mean(axis=-1)
    buffer = io.BytesIO()
    to_pil(np.repeat(1.0 - grey[..., None], 3, axis=-1)).save(buffer, "PNG")
    return str(store_upload("complement.png", buffer.getvalue())[0])


def _regions_over(content: ImageSource, masks: list[ImageSource]) -> np.ndarray:
    """The content at thumbnail size, tinted by region (blue, orange; grey:
    content only), for the regions view."""
    from nst.regions import output_masks

    photo = load_image(content, THUMBNAIL)
    regions = output_masks(masks, len(masks), *photo.shape[:2])
    tints = np.array([[0.3, 0.5, 1.0], [1.0, 0.55, 0.2]])[: len(masks)]
    covered = regions.sum(axis=0).clip(0, 1)[..., None]
    tint = np.einsum("rhw,rc->hwc", regions, tints) + (1 - covered) * 0.5
    return (0.45 * photo + 0.55 * tint).clip(0, 1)


def _uploaded(value: Any) -> tuple[str, bytes] | None:
    """(name, bytes) of the last uploaded file: ipywidgets 8 gives a tuple of
    dicts, 7 (Colab's) a dict of name -> {'content': ...}."""
    if isinstance(value, dict):
        files = [{"name": name, **file} for name, file in value.items()]
    else:
        files = list(value or ())
    if not files:
        return None
    content = files[-1]["content"]
    return files[-1]["name"], content.tobytes() if isinstance(content, memoryview) else bytes(content)


def _error(error: BaseException, prefix: str = "") -> str:
    """``error`` as the status line's one line of red text."""
    text = describe(error, "the traceback is in the studio's .error")
    return f"<span style='color:#b00'>{html.escape(prefix + text)}</span>"
