"""The interactive studio: pick images, move sliders, press Run, watch.

``Studio(...).show()`` in a notebook (or a Voila page) gives:

- content and style pickers: the sample images, or an uploaded file;
- sliders for the content/style ratio alpha/beta (log scale), the total
  variation weight, the learning rate, steps, size and each style layer's
  weight; colour preservation and the optimiser;
- Run, Stop and Save buttons, a `nst.preview.LivePreview` of the run.

The run goes in a background thread, so the notebook stays responsive:
Stop ends it at the next step and keeps the best image so far. Every
control is an attribute, so the studio can be driven from Python (tests do).
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from PIL import Image, UnidentifiedImageError

from nst.config import COLOR_MODES, OPTIMIZERS, Config, preset
from nst.images import SAMPLE_PREFIX, SAMPLES, ImageSource
from nst.preview import LivePreview

UPLOAD = "(uploaded file)"
OFF = "off"


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
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sources = {"content": content, "style": style}
        c = self.config
        slider = {"continuous_update": False, "style": {"description_width": "110px"}, "layout": {"width": "420px"}}

        self.content_pick = _picker("content", content)
        self.style_pick = _picker("style", style)
        self.content_upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload content")
        self.style_upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload style")
        self.ratio = widgets.FloatLogSlider(
            value=c.content_weight / c.style_weight if c.style_weight else 1.0,
            min=-8, max=0, step=0.25, description="α/β", readout_format=".1e", **slider,
        )  # fmt: skip
        self.ratio.add_class("nst-ratio")
        self.tv_on = widgets.Checkbox(value=c.tv_weight > 0, description="total variation", indent=False)
        self.tv_weight = widgets.FloatLogSlider(
            value=c.tv_weight or 1.0, min=-2, max=8, step=0.5, description="TV weight γ", readout_format=".1e", **slider
        )
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
            options=[OFF, *COLOR_MODES], value=c.preserve_color or OFF,
            description="keep colours", style=slider["style"],
        )  # fmt: skip
        self.optimizer = widgets.ToggleButtons(options=list(OPTIMIZERS), value=c.optimizer, description="optimiser")
        self.run_button = widgets.Button(description="Run", button_style="success", icon="play")
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.save_button = widgets.Button(description="Save", icon="save", disabled=True)
        self.save_path = widgets.Text(value="stylized.png", description="file", layout={"width": "260px"})
        for button, name in ((self.run_button, "run"), (self.stop_button, "stop"), (self.save_button, "save")):
            button.add_class(f"nst-{name}")
        for pick, upload in ((self.content_pick, self.content_upload), (self.style_pick, self.style_upload)):
            upload.observe(lambda _, pick=pick: setattr(pick, "value", UPLOAD), names="value")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.save_button.on_click(lambda _: self.save())
        self.preview = LivePreview(every=1, plot_every=10)
        self.message = widgets.HTML("")

        inputs = widgets.HBox(
            [widgets.VBox([self.content_pick, self.content_upload]), widgets.VBox([self.style_pick, self.style_upload])]
        )
        weights = widgets.VBox([widgets.HTML("<b>style layer weights w<sub>l</sub></b>"), *self.layer_weights])
        knobs = widgets.VBox(
            [self.ratio, widgets.HBox([self.tv_on, self.tv_weight]), self.learning_rate, self.steps, self.size]
        )
        buttons = widgets.HBox([self.run_button, self.stop_button, self.save_button, self.save_path])
        self.widget = widgets.VBox(
            [
                inputs,
                widgets.HBox([knobs, weights]),
                widgets.HBox([self.preserve_color, self.optimizer]),
                buttons,
                self.message,
                self.preview.widget,
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

    def inputs(self) -> tuple[ImageSource, ImageSource]:
        """The content and style images picked (a sample, a path or an upload)."""
        return (
            _chosen(self.content_pick, self.content_upload, self._sources["content"]),
            _chosen(self.style_pick, self.style_upload, self._sources["style"]),
        )

    # -- actions -------------------------------------------------------------

    def show(self) -> widgets.Widget:
        """Display the studio in the notebook."""
        from IPython.display import display

        display(self.widget)
        return self.widget

    def run(self, *, wait: bool = False) -> None:
        """Start a run with the current settings in the background (``wait``:
        block until it ends). Does nothing while a run is going."""
        if self.running:
            return
        try:
            config, (content, style) = self.settings(), self.inputs()
            self.preview.set_inputs(content, style)
        except Exception as e:  # a bad setting or image: say so in the UI
            self._say(f"<span style='color:#b00'>{e}</span>")
            return
        self._stop.clear()
        self.error = None
        self._busy(True)
        self._say(f"running {config.steps} steps at {config.size} px, α/β = {self.ratio.value:.1e} …")
        self._thread = threading.Thread(target=self._work, args=(content, style, config), daemon=True)
        self._thread.start()
        if wait:
            self.wait()

    def stop(self) -> None:
        """End the run at the next step; the best image so far is kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run has ended."""
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def save(self, path: str | None = None) -> Path | None:
        """Write the best image of the last run, with its settings, as a PNG."""
        if self.result is None:
            self._say("nothing to save yet: press Run first")
            return None
        written = self.result.save(path or self.save_path.value)
        self._say(f"saved <code>{written}</code>")
        return written

    # -- the background run ---------------------------------------------------

    def _work(self, content: ImageSource, style: ImageSource, config: Config) -> None:
        from nst.optimize import stylize

        def callback(progress: Any) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt  # stylize ends the run and keeps the best image
            self.preview(progress)

        started = time.perf_counter()
        try:
            self.result = stylize(content, style, config=config, callback=callback)
            self.preview.finish(self.result)
            how = "stopped" if self.result.stopped else "finished"
            self._say(f"{how} after {time.perf_counter() - started:.0f} s on {self.result.device}")
        except KeyboardInterrupt:
            self._say("stopped before the first step")
        except Exception as e:  # shown in the UI: nobody sees a thread's traceback
            self.error = e
            self._say(f"<span style='color:#b00'>run failed: {e}</span>")
        finally:
            self._busy(False)

    def _busy(self, running: bool) -> None:
        self.run_button.disabled = running
        self.stop_button.disabled = not running
        self.save_button.disabled = running or self.result is None

    def _say(self, html: str) -> None:
        self.message.value = html


def _picker(role: str, source: ImageSource) -> widgets.Dropdown:
    """A dropdown of the samples, plus the starting source and uploads."""
    options = [(name, SAMPLE_PREFIX + name) for name in SAMPLES]
    if isinstance(source, str) and source not in dict(options).values():
        options.insert(0, (Path(source).name, source))
    value = source if isinstance(source, str) else UPLOAD
    return widgets.Dropdown(options=[*options, (UPLOAD, UPLOAD)], value=value, description=role)


def _chosen(pick: widgets.Dropdown, upload: widgets.FileUpload, start: ImageSource) -> ImageSource:
    """The dropdown's choice; for the upload entry, the newest uploaded file
    (or the starting image when that was an object rather than a name)."""
    if pick.value != UPLOAD:
        return pick.value
    file = _uploaded(upload.value)
    if file is None:
        if not isinstance(start, str):
            return start
        raise ValueError(f"{pick.description}: no file uploaded yet")
    name, data = file
    try:
        return Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{name}: cannot read this {pick.description} image; upload a PNG, JPEG or WebP") from None


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
