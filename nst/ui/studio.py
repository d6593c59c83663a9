"""The interactive studio: pick images, move sliders, press Run, watch.

``Studio(...).show()`` in a notebook (or a Voila page) gives:

- content and style pickers: the sample images, or an uploaded file; an
  optional second style, and a mask per style (`nst.io.regions`: white where
  that style goes), with the regions shown over the content;
- sliders for the content/style ratio alpha/beta (log scale), the total
  variation weight, the learning rate, steps, size and each style layer's
  weight; colour preservation and the optimiser;
- Run, Pause, Stop, Continue and Save buttons, a `nst.ui.preview.LivePreview`
  of the run, and a strip of the runs made so far to compare and recall.

Every run is a live run (`nst.run.live`), with Adam or L-BFGS: moving
alpha/beta, gamma, the learning rate or a layer weight changes the running
run from its next step (the loss plot marks the step; L-BFGS starts afresh
from its last accepted image), and a new Run on the same size and layers
starts at once, without compiling again. Continue goes on from where a run
ended, with its optimiser's state. Runs go in a background thread, so the
page stays responsive; Stop ends a run at its next step and keeps the best
image.
Every control is an attribute, so the studio can be driven from Python.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from nst.base.config import Config
from nst.io.images import SAMPLE_PREFIX, ImageError, ImageSource, free_path, load_image
from nst.run.live import STEERABLE, LiveRun, start
from nst.run.record import Result
from nst.ui.controls import OFF, Controls
from nst.ui.failure import explain
from nst.ui.preview import THUMBNAIL, LivePreview, encode, stopped

#: Save writes into this folder when set (`make studio` sets it to the
#: clone's out/), else into the current folder; never over an existing file.
OUTPUT_ENV = "NST_OUTPUT_DIR"


class Studio(Controls):
    """An ipywidgets UI around `nst.stylize`.

    Args:
        config: starting settings (default: the 'report' preset); every
            slider starts at its value.
        content: the starting photo (a sample name, path, URL...).
        style: the starting painting, the same kinds.
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
        super().__init__(config, content, style, **overrides)
        self.result = None
        self.error: BaseException | None = None
        self.live: LiveRun | None = None
        """The handle of the current (or last) Adam run: steered by the sliders."""
        self.runs: list[Result] = []
        """Every finished or stopped run, oldest first (the compare strip)."""
        self.run_inputs: list[tuple[ImageSource, Any, list | None]] = []
        """Each of `runs`' content, style(s) and masks, as it was given."""
        self._inputs: tuple[ImageSource, Any, list | None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._make_buttons()
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

        self.widget = self._layout()
        self.widget.add_class("nst-studio")

    def _make_buttons(self) -> None:
        """Run, Pause, Stop, Continue and Save, and the file to save to."""
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play")
        self.pause_button = widgets.Button(description="Pause", icon="pause", disabled=True)
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.continue_button = widgets.Button(
            description="Continue",
            icon="forward",
            disabled=True,
            tooltip="more steps (the steps slider) from where the run is",
        )
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.save_path = widgets.Text(
            value=str(default_output()),
            description="file",
            layout={"width": "460px"},
            style={"description_width": "30px"},
        )
        for button in (self.run_button, self.pause_button, self.stop_button, self.continue_button, self.save_button):
            button.add_class(f"nst-{button.description.lower()}")
        self.run_button.on_click(lambda _: self.run())
        self.pause_button.on_click(
            lambda _: self.resume() if self.pause_button.description == "Resume" else self.pause()
        )
        self.stop_button.on_click(lambda _: self.stop())
        self.continue_button.on_click(lambda _: self.proceed())
        self.save_button.on_click(lambda _: self.save())

    def _layout(self) -> widgets.VBox:
        """The studio's rows: inputs, regions, sliders, buttons, message, preview, compare strip."""
        # Rows wrap in a narrow output area (Colab's), so nothing is cut off.
        wrap = {"flex_flow": "row wrap", "align_items": "flex-start"}
        inputs = widgets.HBox(
            [
                widgets.HBox([self.content_pick, self.content_upload]),
                widgets.HBox([self.style_pick, self.style_upload]),
            ],
            layout=wrap,
        )
        regions = widgets.HBox(
            [
                widgets.VBox(
                    [
                        widgets.HBox([self.style2_pick, self.style2_upload]),
                        widgets.HBox([*self.mask_uploads, self.clear_masks]),
                    ]
                ),
                self.regions_view,
            ],
            layout=wrap,
        )
        weights = widgets.VBox([widgets.HTML("<b>style layer weights w<sub>l</sub></b>"), *self.layer_weights])
        knobs = widgets.VBox(
            [self.ratio, widgets.HBox([self.tv_weight, self.tv_on]), self.learning_rate, self.steps, self.size]
        )
        buttons = widgets.HBox(
            [
                self.run_button,
                self.pause_button,
                self.stop_button,
                self.continue_button,
                self.save_button,
                self.save_path,
            ],
            layout=wrap,
        )
        return widgets.VBox(
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
            config, (content, style) = self.chosen(), self.inputs()
            masks = self.regions(len(style) if isinstance(style, list) else 1)
            self.preview.set_inputs(content, style)
        except Exception as e:  # a bad setting or image: say so in the UI
            self._fail(e)
            return
        self._stop.clear()
        self.error, self.live, self._inputs = None, None, (content, style, masks)
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

    def save(self, path: str | os.PathLike | None = None, *, run: int | None = None) -> Path | None:
        """Write the best image of the current run (or of ``runs[run]``, what
        a thumbnail's save button does), with its settings, as a PNG, never
        over an existing file (``NAME-2.png``... instead). Uploaded inputs
        are copied beside it and the PNG names those copies (with the
        upload's name and SHA-256), so ``nst --resume`` can go on from it."""
        result = self.result if run is None else self.runs[run]
        if result is None:
            self._say("nothing to save yet: press Run first")
            return None
        asked = Path(path or self.save_path.value).expanduser().resolve()
        if asked.suffix.lower() != ".png":
            self._say(f"<span style='color:#b00'>{asked}: give a .png file name (it records the settings)</span>")
            return None
        target = free_path(asked)
        try:
            written = dataclasses.replace(result, sources=self._kept_sources(result, target)).save(target)
        except (OSError, ImageError) as e:  # an unwritable folder, a full disk: the result stays here
            self._fail(e, "not saved: ")
            return None
        note = f" ({asked.name} exists and was kept)" if target != asked else ""
        which = "" if run is None else f"run {run + 1} "
        self._say(f"saved {which}<code>{written}</code>{note}{_offer(written)}")
        self.save_path.value = str(free_path(asked))
        return written

    def _kept_sources(self, result: Result, target: Path) -> dict[str, Any]:
        """``result``'s sources, with each uploaded input (content, styles,
        masks) copied beside ``target`` and named by its copy."""
        sources = dict(result.sources)
        uploaded = {}
        lists = {
            "content": [sources["content"]],
            "style": list(sources.get("styles", [])),
            "mask": list(sources.get("masks", [])),
        }
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
            sources.update(
                content=lists["content"][0], styles=lists["style"], style=" + ".join(lists["style"]), uploaded=uploaded
            )
            if "masks" in sources:
                sources["masks"] = lists["mask"]
        return sources

    # -- the background run ---------------------------------------------------

    def _start(self, work: Any, *args: Any) -> None:
        self._thread = threading.Thread(target=self._finish, args=(work, *args), daemon=True, name="nst-studio")
        self._thread.start()

    def _work(self, content: ImageSource, style: ImageSource, config: Config, masks: list | None) -> Result:
        """One run: a live run (steerable, warm after the first of its shape)."""
        self.live = start(content, style, config=config, callback=self.preview, masks=masks)
        self.preview.marks = self.live.changes
        if self._stop.is_set():  # Stop was pressed while the run was being set up
            self.live.stop()
        return self.live.result()

    def _work_more(self, steps: int) -> Result:
        self.live.proceed(steps)
        return self.live.result()

    def _finish(self, work: Any, *args: Any) -> None:
        """Run ``work`` (in the background thread), then show how it ended."""
        started = time.perf_counter()
        try:
            self.result = work(*args)
            self.preview.finish(self.result)
            self._keep(self.result)
            done = self.result.metadata()["steps_done"]
            how = stopped(self.result) if self.result.stopped else f"finished at step {done}"
            said = f"{how} ({time.perf_counter() - started:.0f} s on {self.result.device})"
        except KeyboardInterrupt:
            said = "stopped before the first step"
        except Exception as e:  # shown in the UI: nobody sees a thread's traceback
            self.error = e
            said = _error(e, "run failed: ")
        # The buttons first: whoever reads the message can press Run again.
        self._busy(False)
        self._say(said)

    def _steer(self) -> None:
        """Send the sliders' weights and learning rate to the running run."""
        if self.live is None or not self.live.running:
            return
        try:
            c = self.chosen()
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
        self.run_inputs.append(self._inputs)
        index = len(self.runs)
        c = result.config
        content, style, _ = self._inputs
        styles = " + ".join(self.name_of(s) for s in (style if isinstance(style, list) else [style]))
        summary = (
            f"run {index}: {self.name_of(content)} in the style of {styles}; "
            f"α/β {c.content_weight / c.style_weight:.1e}, γ {c.tv_weight:g}, lr {c.learning_rate:g}, "
            f"{result.metadata()['steps_done']} steps, {c.size} px, loss {result.best_loss:.3g}"
        )
        thumbnail = widgets.Image(value=encode(result.best_image, "jpeg"), format="jpeg", layout={"width": "96px"})
        button = widgets.Button(description=f"run {index}", tooltip=summary, layout={"width": "62px"})
        button.add_class("nst-recall")
        button.on_click(lambda _: self.recall(index - 1))
        keep = widgets.Button(icon="save", tooltip=f"save run {index}", layout={"width": "32px"})
        keep.add_class("nst-save-run")
        keep.on_click(lambda _: self.save(run=index - 1))
        self.strip.children = (*self.strip.children, widgets.VBox([thumbnail, widgets.HBox([button, keep])]))

    def recall(self, index: int) -> None:
        """Put run ``index``'s settings and inputs (content, styles, masks)
        back on the controls and show its image beside the current one (the
        compare view)."""
        result = self.runs[index]
        content, style, masks = self.run_inputs[index]
        styles = style if isinstance(style, list) else [style]
        self.choose("content", content)
        self.choose("style", styles[0])
        if len(styles) > 1:
            self.choose("style2", styles[1])
        else:
            self.style2_pick.value = OFF
        self.set_masks(*(masks or ()))
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
            if masks:
                self.regions_view.value = encode(_regions_over(content, masks), "png")
            self.regions_view.layout.display = None if masks else "none"
        except ValueError as e:  # ImageError and ConfigError: the inputs stay as they were
            if any(m is not None for m in self.masks):
                self._fail(e)
            return
        if self.error is not None and not self.running:  # fixed: the complaint goes
            self.error = None
            self._say("")

    def _busy(self, running: bool) -> None:
        self.run_button.disabled = running
        self.stop_button.disabled = not running
        self.pause_button.disabled = not running
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


def _regions_over(content: ImageSource, masks: list[ImageSource]) -> np.ndarray:
    """The content at thumbnail size, tinted by region (blue, orange; grey:
    content only), for the regions view."""
    from nst.io.regions import output_masks

    photo = load_image(content, THUMBNAIL)
    regions = output_masks(masks, len(masks), *photo.shape[:2])
    tints = np.array([[0.3, 0.5, 1.0], [1.0, 0.55, 0.2]])[: len(masks)]
    covered = regions.sum(axis=0).clip(0, 1)[..., None]
    tint = np.einsum("rhw,rc->hwc", regions, tints) + (1 - covered) * 0.5
    return (0.45 * photo + 0.55 * tint).clip(0, 1)


def _error(error: BaseException, prefix: str = "") -> str:
    """``error`` as the status line's one line of red text."""
    text = explain(error, "the traceback is in the studio's .error")
    return f"<span style='color:#b00'>{html.escape(prefix + text)}</span>"
