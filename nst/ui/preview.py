"""A live preview for notebooks: content, style and the current image side
by side, a progress bar, and the loss curves, updated in place.

Use it as the callback of any run::

    preview = nst.ui.preview.LivePreview("photo.jpg", "painting.jpg")
    preview.show()
    result = nst.stylize("photo.jpg", "painting.jpg", callback=preview)

It is built from the core ipywidgets that Jupyter, JupyterLab, VS Code and
Colab all ship (7.x and 8.x). The images are `ipywidgets.Image` widgets fed
with encoded bytes, far cheaper than redrawing a figure; the loss plot is
drawn off screen with matplotlib's Agg canvas, and only every so often.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw

from nst.io.images import ImageSource, load_image, to_pil

if TYPE_CHECKING:
    from nst.run.record import Progress, Result

#: Longest side of the input thumbnails, pixels.
THUMBNAIL = 256
#: The loss plot shows this many decades below its highest value: the content
#: term starts at 0 and would otherwise stretch the log axis over 15 of them,
#: while the unweighted style term runs some 7 decades below the total.
DECADES = 9


class LivePreview:
    """Callable progress display; pass it as ``callback=`` to `nst.stylize`.

    Args:
        content: the photo, shown beside the output (optional).
        style: the painting, shown too (optional; of a list, the first).
        every: refresh the current image every ``every`` steps (and at the end).
        plot_every: redraw the loss curves every ``plot_every`` steps.
        width: display width of each image, CSS pixels.
    """

    def __init__(
        self,
        content: ImageSource | None = None,
        style: ImageSource | list[ImageSource] | None = None,
        *,
        every: int = 5,
        plot_every: int = 50,
        width: int = 256,
    ) -> None:
        self.every, self.plot_every = max(1, every), max(1, plot_every)
        box = widgets.Layout(width=f"{width}px", object_fit="contain")
        self.content_view = widgets.Image(format="png", layout=box)
        self.style_view = widgets.Image(format="png", layout=box)
        self.current_view = widgets.Image(format="jpeg", layout=box)
        self.current_view.add_class("nst-current")
        self.compare_view = widgets.Image(format="jpeg", layout=box)
        self.compare_caption = widgets.HTML("")
        self.compare_box = widgets.VBox([self.compare_caption, self.compare_view], layout={"display": "none"})
        self.progress = widgets.IntProgress(
            value=0, min=0, max=1, description="step", layout={"width": f"{3 * width}px"}
        )
        self.status = widgets.Label(value="")
        self.status.add_class("nst-status")
        self.plot = widgets.Image(format="png", layout=widgets.Layout(width=f"{3 * width}px"))
        self.plot.add_class("nst-plot")
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [
                        _captioned(self.content_view, "content"),
                        _captioned(self.style_view, "style"),
                        _captioned(self.current_view, "output"),
                        self.compare_box,
                    ],
                    layout={"flex_flow": "row wrap"},
                ),
                self.progress,
                self.status,
                self.plot,
            ]
        )
        self.history: dict[str, list[float]] = {}
        self.marks: list[dict] = []
        """Changes made during the run (`nst.run.live.LiveRun.changes`): marked on the plot."""
        self.updates = 0  # how many times the current image was refreshed
        self.current_view.value = placeholder("the output appears here")
        self.set_inputs(content, style)

    def set_inputs(self, content: ImageSource | None, style: ImageSource | list[ImageSource] | None) -> None:
        """Show these inputs and forget the last run's curves."""
        if content is not None:
            self.content_view.value = encode(load_image(content, size=THUMBNAIL), "png")
        if style is not None:
            first = style[0] if isinstance(style, (list, tuple)) else style
            self.style_view.value = encode(load_image(first, size=THUMBNAIL), "png")
        self.history, self.marks = {}, []
        self.plot.value = loss_plot({})

    def show(self) -> widgets.Widget:
        """Display the preview in the notebook (once; it then updates in place)."""
        from IPython.display import display

        display(self.widget)
        return self.widget

    def __call__(self, progress: Progress) -> None:
        """Record the losses; refresh the image and the plot when due."""
        for name in ("total", "content", "style"):
            self.history.setdefault(name, []).append(progress.losses[name])
        self.history.setdefault("step", []).append(progress.step)
        last = progress.step >= progress.steps
        self.progress.max, self.progress.value = progress.steps, progress.step
        changed = f" · settings changed at step {self.marks[-1]['step']}" if self.marks else ""
        self.status.value = (
            f"step {progress.step} of {progress.steps} · loss {progress.losses['total']:.3g} (content "
            f"{progress.losses['content']:.3g}, style {progress.losses['style']:.3g}) · {progress.elapsed:.0f} s{changed}"
        )
        if progress.step % self.every == 0 or last:
            self.current_view.value = encode(progress.image(), "jpeg")
            self.updates += 1
        if progress.step % self.plot_every == 0 or last or (self.marks and self.marks[-1]["step"] == progress.step):
            self.plot.value = loss_plot(self.history, marks=[m["step"] for m in self.marks])

    def finish(self, result: Result) -> None:
        """Show the run's best image and full loss curves."""
        self.current_view.value = encode(result.best_image, "jpeg")
        self.plot.value = loss_plot(result.history, marks=[c["step"] for c in result.changes])
        best = f"best loss {result.best_loss:.4g} at step {result.best_step}"
        self.status.value = f"{stopped(result)} ({best})" if result.stopped else f"done: {best}"

    def compare(self, image: np.ndarray, caption: str) -> None:
        """Show ``image`` beside the current one (hidden until first used)."""
        self.compare_view.value = encode(image, "jpeg")
        self.compare_caption.value = f"<b>{caption}</b>"
        self.compare_box.layout.display = None


def stopped(result: Result) -> str:
    """How a run that ended early ended, in the words a person wants:
    'stopped at step 41; best image kept' (with the reason unless it was
    asked to stop)."""
    why = "" if result.stopped == "interrupted" else f" ({result.stopped})"
    return f"stopped at step {result.metadata()['steps_done']}{why}; best image kept"


def encode(image: np.ndarray, fmt: str = "png") -> bytes:
    """An image in [0, 1] as PNG or JPEG bytes, for an `ipywidgets.Image`."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format=fmt.upper(), **({"quality": 90} if fmt == "jpeg" else {}))
    return buffer.getvalue()


def placeholder(text: str, size: tuple[int, int] = (THUMBNAIL, THUMBNAIL * 3 // 4)) -> bytes:
    """A pale panel saying ``text``: what an image view shows before it has an image."""
    picture = Image.new("RGB", size, (242, 242, 242))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 0, size[0] - 1, size[1] - 1], outline=(200, 200, 200))
    draw.text((size[0] / 2, size[1] / 2), text, fill=(110, 110, 110), anchor="mm")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def loss_plot(history: dict[str, list[float]], size: tuple[float, float] = (7.5, 2.4), marks: list[int] = ()) -> bytes:
    """The total, content and style losses against the step, log scale, as
    PNG bytes: whole steps on the x axis, at most `DECADES` decades on the y
    axis, the legend beside the curves, a dashed line at each step of
    ``marks`` (where settings changed). An empty history gives the empty plot."""
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    axes = figure.add_subplot()
    steps = np.asarray(history.get("step", []), dtype=float)
    shown = []
    for name in ("total", "content", "style"):
        values = np.asarray(history.get(name, []), dtype=float)
        positive = np.where(values > 0, values, np.nan)
        if np.isfinite(positive).any():
            axes.plot(steps[: len(values)], positive, label=name)
            shown.append(positive)
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if shown:
        axes.set_yscale("log")
        top = max(np.nanmax(v) for v in shown)
        bottom = max(min(np.nanmin(v) for v in shown), top / 10**DECADES)
        axes.set_ylim(bottom / 1.5, top * 1.5)
        for i, step in enumerate(marks):
            axes.axvline(step, color="0.35", linestyle="--", linewidth=1, label="settings changed" if i == 0 else None)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        axes.set_xticks([])
        axes.set_yticks([])
        axes.text(
            0.5,
            0.5,
            "the losses appear here during a run",
            ha="center",
            va="center",
            color="0.45",
            transform=axes.transAxes,
        )
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _captioned(view: widgets.Widget, caption: str) -> Any:
    return widgets.VBox([widgets.HTML(f"<b>{caption}</b>"), view])
