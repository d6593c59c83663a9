"""The studio's controls (`nst.ui.studio`): the image pickers and uploads, the
masks of a second style, and the sliders and choices of a run, with what
they say: the settings (`Controls.chosen`), the inputs and the regions.

What the studio adds (the buttons, the runs, the preview) builds on this
class: it shows the picked inputs (``_show_inputs``) and reports what goes
wrong (``_fail``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from nst.base.config import COLOR_MODES, OPTIMIZERS, Config, preset
from nst.io.images import SAMPLE_PREFIX, SAMPLES, ImageError, ImageSource, load_image, source_name, store_upload, to_pil

UPLOAD = "(uploaded file)"
OFF = "off"


class Controls:
    """The widgets that say what to run, starting from ``config`` (and
    ``overrides``, or a ``preset=``) with ``content`` and ``style``."""

    def __init__(self, config: Config | None, content: ImageSource, style: ImageSource, **overrides: Any) -> None:
        if "preset" in overrides:
            config = preset(overrides.pop("preset"), **overrides)
        self.config = (config or Config()).replace(**overrides)
        self._sources = {"content": content, "style": style}
        self.uploads: dict[str, dict[str, str]] = {}
        """Uploaded inputs by the path they are kept at: their name and SHA-256."""
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
            value=OFF,
            description="style 2",
            style=label,
            layout={"width": "300px"},
        )
        self.style2_upload = _upload("style2")
        self.mask_uploads = [_upload(f"mask{i}", f"mask {i}") for i in (1, 2)]
        self.clear_masks = widgets.Button(description="no masks", icon="times", layout={"width": "110px"})
        self.clear_masks.add_class("nst-clear-masks")
        # Hidden until there are regions to draw (an empty image is a broken icon).
        self.regions_view = widgets.Image(format="png", layout={"width": "160px", "display": "none"})
        self.regions_view.add_class("nst-regions")
        self.masks: list[ImageSource | None] = [None, None]
        """The mask of each style (uploaded, or set from Python), or None."""
        self._make_sliders(slider, label)
        self.taken: dict[str, ImageSource] = {}
        """What each dropdown's upload entry stands for, by role ('content',
        'style', 'style2'): an uploaded file's kept path, or a recalled run's input."""
        for role, pick, upload in (
            ("content", self.content_pick, self.content_upload),
            ("style", self.style_pick, self.style_upload),
            ("style2", self.style2_pick, self.style2_upload),
        ):
            upload.observe(lambda _, r=role, p=pick, u=upload: self._take(r, p, u), names="value")
        for i, upload in enumerate(self.mask_uploads):
            upload.observe(lambda _, i=i: self._mask_uploaded(i), names="value")
        self.clear_masks.on_click(lambda _: self.set_masks(None, None))

    def _make_sliders(self, slider: dict[str, Any], label: dict[str, str]) -> None:
        """The weights, learning rate, steps and size sliders and the two
        dropdowns, each starting at the config's value."""
        c = self.config
        self.ratio = widgets.FloatLogSlider(
            value=c.content_weight / c.style_weight if c.style_weight else 1.0,
            min=-8,
            max=0,
            step=0.25,
            description="α/β",
            readout_format=".1e",
            **slider,
        )
        self.ratio.add_class("nst-ratio")
        self.tv_on = widgets.Checkbox(value=c.tv_weight > 0, description="total variation", indent=False)
        # gamma from 1 (no visible effect) to 1e5 (a blur), measured at 256 px
        # on both presets (README, "The losses").
        self.tv_weight = widgets.FloatLogSlider(
            value=c.tv_weight or 100.0,
            min=0,
            max=5,
            step=0.25,
            description="TV weight γ",
            readout_format=".1e",
            **slider,
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
            options=[OFF, *COLOR_MODES],
            value=c.preserve_color or OFF,
            description="keep colours",
            style=label,
            layout={"width": "260px"},
        )
        self.optimizer = widgets.Dropdown(
            options=list(OPTIMIZERS), value=c.optimizer, description="optimiser", style=label, layout={"width": "260px"}
        )

    def chosen(self) -> Config:
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
        an upload is kept at (see `nst.io.images.store_upload`); two styles
        when a second is picked."""
        content = self._chosen(self.content_pick, "content")
        style = self._chosen(self.style_pick, "style")
        if self.style2_pick.value == OFF:
            return content, style
        return content, [style, self._chosen(self.style2_pick, "style2")]

    def choose(self, role: str, source: ImageSource) -> None:
        """Pick ``source`` for ``role`` ('content', 'style', 'style2'; 'off'
        for no second style): a dropdown entry where it is one, else the
        upload entry, labelled with its name."""
        pick = {"content": self.content_pick, "style": self.style_pick, "style2": self.style2_pick}[role]
        if isinstance(source, str) and source in [value for _, value in pick.options]:
            pick.value = source
            return
        self.taken[role] = source
        label = f"{UPLOAD[:-1]}: {self.name_of(source)})"
        pick.options = [*(o for o in pick.options if o[1] != UPLOAD), (label, UPLOAD)]
        pick.value = UPLOAD
        self._show_inputs()

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

    def name_of(self, source: ImageSource) -> str:
        """An input as a person knows it: an upload's file name, a path's
        name, a sample's name, or the kind of object."""
        if isinstance(source, str):
            return self.uploads.get(source, {}).get("name") or Path(source).name
        return source_name(source)

    def _stored(self, upload: widgets.FileUpload, what: str) -> str | None:
        """An upload checked as it arrives and kept (`store_upload`); the
        button is emptied, so its count goes back to none. A file that is not
        an image is said at once, naming ``what``; None then."""
        file = uploaded(upload.value)
        if file is None:
            return None
        _empty(upload)
        try:
            path, digest = store_upload(*file)
        except ImageError as e:
            self._fail(e, f"{what}: ")
            return None
        self.uploads[str(path)] = {"name": file[0], "sha256": digest}
        return str(path)

    def _take(self, role: str, pick: widgets.Dropdown, upload: widgets.FileUpload) -> None:
        path = self._stored(upload, pick.description)
        if path is not None:
            self.choose(role, path)

    def _mask_uploaded(self, index: int) -> None:
        path = self._stored(self.mask_uploads[index], f"mask {index + 1}")
        if path is not None:
            self.masks[index] = path
            self._show_inputs()

    def _chosen(self, pick: widgets.Dropdown, role: str) -> ImageSource:
        """The dropdown's choice; for the upload entry, what it stands for
        (`taken`), else the starting image when that was an object, not a name."""
        if pick.value != UPLOAD:
            return pick.value
        if role in self.taken:
            return self.taken[role]
        if not isinstance(self._sources.get(role), (str, type(None))):
            return self._sources[role]
        raise ImageError(f"{pick.description}: no file uploaded yet; upload one or pick a sample")


def _picker(role: str, source: ImageSource, style: dict[str, str]) -> widgets.Dropdown:
    """A dropdown of the samples, plus the starting source and uploads."""
    options = [(name, SAMPLE_PREFIX + name) for name in SAMPLES]
    if isinstance(source, str) and source not in dict(options).values():
        options.insert(0, (Path(source).name, source))
    value = source if isinstance(source, str) else UPLOAD
    return widgets.Dropdown(
        options=[*options, (UPLOAD, UPLOAD)], value=value, description=role, style=style, layout={"width": "300px"}
    )


def _upload(role: str, description: str = "upload") -> widgets.FileUpload:
    """An upload button for one input; picking a file selects it in the dropdown."""
    upload = widgets.FileUpload(
        accept="image/*", multiple=False, description=description, icon="upload", layout={"width": "110px"}
    )
    upload.add_class(f"nst-upload-{role}")
    return upload


def _empty(upload: widgets.FileUpload) -> None:
    """Forget an upload button's files: ipywidgets 8 holds them in ``value``;
    7 (Colab's) in ``data`` and ``metadata``, counted by ``_counter``."""
    if hasattr(upload, "_counter"):
        upload.metadata, upload.data = [], []
        upload._counter = 0
    else:
        upload.value = ()


def _complement(mask: ImageSource) -> str:
    """A mask's complement (white where it is black), kept like an upload."""
    grey = load_image(mask).mean(axis=-1)
    buffer = io.BytesIO()
    to_pil(np.repeat(1.0 - grey[..., None], 3, axis=-1)).save(buffer, "PNG")
    return str(store_upload("complement.png", buffer.getvalue())[0])


def uploaded(value: Any) -> tuple[str, bytes] | None:
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
