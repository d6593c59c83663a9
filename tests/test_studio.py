"""The notebook parts, driven from Python: the live preview refreshes in
place, the studio's controls become the run's settings, Run works in the
background, Stop keeps the best image, Save writes the settings."""

from __future__ import annotations

import datetime
import hashlib
import io
import time

import ipywidgets
import numpy as np
import pytest
from conftest import TINY
from PIL import Image

import nst
from nst.io.images import load_image, read_metadata, save_image
from nst.ui.controls import UPLOAD, uploaded
from nst.ui.preview import LivePreview, encode, loss_plot
from nst.ui.studio import Studio


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_preview_updates_the_image_and_the_plot_in_place(content_image, style_image):
    preview = LivePreview(content_image, style_image, every=2, plot_every=3)
    widget = preview.widget
    shown = []
    original = preview.__call__

    def spy(progress):
        original(progress)
        shown.append(preview.current_view.value)

    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 5}, callback=spy)
    preview.finish(result)
    assert preview.widget is widget  # one display, updated in place
    assert preview.updates == 4  # steps 0, 2, 4 and the last (5)
    assert len({bytes(v) for v in shown}) >= 3  # the picture really changed
    assert decode(preview.current_view.value).shape == (24, 32, 3)
    assert decode(preview.plot.value).shape[1] > 500 and preview.progress.value == 5
    assert decode(preview.content_view.value).shape[1] == 256
    assert "best loss" in preview.status.value


def test_loss_plot_and_encode_make_real_images():
    png = loss_plot({"step": [0, 1, 2], "total": [3.0, 2.0, 1.0], "content": [0.0, 1.0, 1.0], "style": [3, 1, 0.5]})
    assert Image.open(io.BytesIO(png)).format == "PNG"
    image = np.linspace(0, 1, 4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    assert Image.open(io.BytesIO(encode(image, "jpeg"))).size == (6, 4)
    np.testing.assert_allclose(decode(encode(image, "png")) / 255.0, image, atol=1 / 255)


@pytest.fixture
def studio(content_image, style_image):
    return Studio(content=content_image, style=style_image, **TINY)


def test_controls_become_the_settings(studio):
    studio.ratio.value = 1e-4
    studio.tv_on.value, studio.tv_weight.value = True, 10.0
    studio.learning_rate.value, studio.steps.value, studio.size.value = 0.05, 7, 48
    studio.layer_weights[0].value = 0.0
    studio.preserve_color.value, studio.optimizer.value = "luminance", "lbfgs"
    c = studio.chosen()
    assert c.style_weight == pytest.approx(1e4) and c.content_weight == 1.0
    assert (c.tv_weight, c.learning_rate, c.steps, c.size) == (10.0, 0.05, 7, 48)
    assert c.style_layer_weights[0] == 0.0 and len(c.style_layer_weights) == 3
    assert (c.preserve_color, c.optimizer, c.weights) == ("luminance", "lbfgs", "random")
    studio.tv_on.value, studio.preserve_color.value = False, "off"
    assert studio.chosen().tv_weight == 0.0 and studio.chosen().preserve_color is None


def test_run_in_the_background_then_save(studio, tmp_path):
    studio.steps.value = 3
    studio.run(wait=True)
    assert studio.error is None and studio.result is not None and studio.result.stopped is None
    assert len(studio.result.history["total"]) == 4 and studio.preview.updates >= 4
    assert not studio.save_button.disabled and not studio.run_button.disabled and studio.stop_button.disabled
    written = studio.save(str(tmp_path / "studio.png"))
    assert read_metadata(written)["settings"]["steps"] == 3 and "saved" in studio.message.value


def test_stop_mid_run_keeps_the_best_image(studio):
    studio.steps.value = 2000
    studio.run()
    deadline = time.time() + 60
    while studio.preview.progress.value < 3 and time.time() < deadline:
        time.sleep(0.05)
    assert studio.running and not studio.stop_button.disabled
    studio.stop_button.click()
    studio.wait(60)
    result = studio.result
    assert not studio.running and result.stopped == "interrupted"
    assert 3 <= len(result.history["total"]) < 2000
    assert result.best_loss == pytest.approx(min(result.history["total"]), rel=1e-6)
    assert studio.message.value.startswith(f"stopped at step {result.metadata()['steps_done']}; best image kept (")


def pick_file(upload: ipywidgets.FileUpload, name: str, data: bytes) -> None:
    """What the browser does when a file is picked: ipywidgets 8 sets the
    value; 7 (Colab's) sets metadata and data, then counts the upload."""
    if ipywidgets.__version__.startswith("7."):
        upload.metadata = [{"name": name, "type": "image/png", "size": len(data), "lastModified": 0}]
        upload.data = [data]
        upload._counter += 1
    else:
        upload.value = (
            {
                "name": name,
                "type": "image/png",
                "size": len(data),
                "content": memoryview(data),
                "last_modified": datetime.datetime.now(datetime.timezone.utc),
            },
        )


def test_uploads_and_bad_inputs(studio, content_image, tmp_path):
    png = save_image(tmp_path / "up.png", content_image).read_bytes()
    pick_file(studio.style_upload, "up.png", png)
    assert studio.style_pick.value == UPLOAD  # an upload selects itself
    _, style = studio.inputs()
    assert Image.open(style).size == (128, 96)  # kept as a file, named by its hash
    assert studio.uploads[style] == {"name": "up.png", "sha256": hashlib.sha256(png).hexdigest()}
    studio.content_pick.value = UPLOAD  # nothing uploaded for content, and it started from an array
    assert studio.inputs()[0] is not None
    # Colab's ipywidgets 7 gives a dict of name -> file instead.
    assert uploaded({"up.png": {"content": png, "metadata": {}}}) == ("up.png", png) and uploaded(()) is None
    studio.size.value = 8  # below the slider's range: clamped, never invalid
    assert studio.size.value == 32
    # Taken uploads leave the button empty (no "upload (1)"), and the dropdown names the file.
    assert uploaded(studio.style_upload.value) is None and getattr(studio.style_upload, "_counter", 0) == 0
    assert dict(studio.style_pick.options)[f"{UPLOAD[:-1]}: up.png)"] == UPLOAD
    # A file that is not an image is said at once, and the pick stays what it was.
    pick_file(studio.style_upload, "notes.txt", b"not an image")
    assert "style: notes.txt: cannot read this image; upload a PNG" in studio.message.value
    assert studio.style_pick.value == UPLOAD and studio.inputs()[1] == style
    studio.style_pick.value = "sample:the_scream"  # the input changed: the complaint goes
    assert studio.message.value == "" and studio.error is None
    studio.style_pick.value = UPLOAD  # the upload is still there to pick
    assert studio.inputs()[1] == style


def test_the_first_screen_shows_the_inputs_and_placeholders(studio):
    """Before any Run: the chosen images, and panels that say what will come
    (no empty image, which a browser draws as a broken icon)."""
    preview = studio.preview
    for view in (preview.content_view, preview.style_view, preview.current_view, preview.plot):
        assert len(view.value) > 500 and Image.open(io.BytesIO(view.value)).size[0] >= 200
    assert decode(preview.content_view.value).shape[:2] == (192, 256)  # the 128 x 96 content, as a thumbnail
    before = preview.style_view.value
    studio.style_pick.value = "sample:the_scream"  # a portrait painting (offline: its drawn stand-in), shown at once
    assert preview.style_view.value != before
    assert decode(preview.style_view.value).shape[:2] == load_image("sample:the_scream", size=256).shape[:2]


def test_save_never_overwrites_and_keeps_uploads_for_resume(studio, content_image, style_image, tmp_path, monkeypatch):
    from nst.ui import cli
    from nst.ui.studio import default_output

    monkeypatch.setenv("NST_OUTPUT_DIR", str(tmp_path))
    assert default_output() == tmp_path / "stylized.png"
    for view, image, name in (
        (studio.content_upload, content_image, "my photo.jpg"),
        (studio.style_upload, style_image, "painting.png"),
    ):
        data = io.BytesIO()
        Image.fromarray((image * 255).astype(np.uint8)).save(data, format="PNG")
        pick_file(view, name, data.getvalue())
    studio.steps.value = 2
    studio.run(wait=True)
    assert studio.error is None
    first = studio.save(tmp_path / "stylized.png")
    second = studio.save(tmp_path / "stylized.png")
    assert (first, second) == (tmp_path / "stylized.png", tmp_path / "stylized-2.png")
    assert str(second) in studio.message.value and "stylized.png exists and was kept" in studio.message.value
    assert studio.save_path.value == str(tmp_path / "stylized-3.png")  # the next free name
    meta = read_metadata(first)
    assert meta["content"] == str(tmp_path / "stylized-content.jpg") and (tmp_path / "stylized-content.jpg").is_file()
    assert meta["styles"] == [str(tmp_path / "stylized-style.png")]
    assert meta["uploaded"]["content"]["name"] == "my photo.jpg" and len(meta["uploaded"]["style"]["sha256"]) == 64
    # A PNG made from uploads goes on with `nst --resume`, from the copies.
    assert cli.main(["--resume", str(first), "--steps", "1", "-o", str(tmp_path / "more.png"), "--quiet"]) == 0
    assert read_metadata(tmp_path / "more.png")["content"] == meta["content"]
    assert studio.save(tmp_path / "x.jpg") is None and "give a .png file name" in studio.message.value


def test_save_hands_the_png_to_the_browser(studio, tmp_path, monkeypatch):
    """A download link outside Colab; Colab's files.download inside it."""
    import base64
    import sys
    import types

    studio.steps.value = 1
    studio.run(wait=True)
    written = studio.save(tmp_path / "out.png")
    link = studio.message.value.split('href="data:image/png;base64,')[1].split('"')[0]
    assert 'download="out.png"' in studio.message.value and base64.b64decode(link) == written.read_bytes()
    asked = []
    colab = types.ModuleType("google.colab")
    colab.files = types.SimpleNamespace(download=asked.append)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    again = studio.save(tmp_path / "out.png")
    assert asked == [str(again)] and "(downloading)" in studio.message.value


def test_show_displays_the_studio_once(studio, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objects: shown.extend(objects))
    assert studio.show() is None  # as a cell's last line, nothing more is displayed
    assert shown == [studio.widget]


def test_a_slider_steers_the_running_run_and_the_next_run_starts_warm(content_image, style_image):
    """The issue's check: a 64 px studio run whose alpha/beta slider moves
    mid-run keeps one step count, its history has the new style weight from
    the step it took effect, and the next Run compiles nothing."""
    studio = Studio(content=content_image, style=style_image, **{**TINY, "size": 64})
    studio.steps.value = 2000
    studio.run()
    deadline = time.time() + 120
    while not (studio.live and studio.live.step >= 3) and time.time() < deadline:
        time.sleep(0.01)
    assert not studio.pause_button.disabled and studio.continue_button.disabled
    studio.ratio.value = 1e-6  # beta 1e6 from the next step on
    while (
        not (studio.live.changes and studio.live.step > studio.live.changes[0]["step"] + 2) and time.time() < deadline
    ):
        time.sleep(0.01)
    studio.pause_button.click()
    while not studio.live.paused and time.time() < deadline:
        time.sleep(0.01)
    assert studio.pause_button.description == "Resume" and studio.live.running
    studio.pause_button.click()
    assert studio.pause_button.description == "Pause"
    studio.stop()
    studio.wait(60)
    result = studio.result
    h, at = result.history, result.changes[0]["step"]
    assert h["step"] == list(range(len(h["step"]))) and at >= 3
    assert set(h["style_weight"][:at]) == {1e3} and h["style_weight"][at:] == [pytest.approx(1e6)] * (
        len(h["step"]) - at
    )
    assert studio.preview.marks == result.changes and not studio.continue_button.disabled
    assert len(studio.runs) == 1 and "α/β 1.0e-06" in studio.strip.children[0].children[1].children[0].tooltip
    # Run again: the same graph, so the compiled step is reused.
    engine = studio.live.engine
    traces = engine.step.experimental_get_tracing_count()
    studio.steps.value = 3
    studio.run(wait=True)
    assert studio.live.engine is engine and engine.step.experimental_get_tracing_count() == traces
    assert studio.result.history["step"] == [0, 1, 2, 3]  # (no compilation: the trace count above, not a clock)
    # Continue: more steps from where it was, then recall the first run's settings.
    studio.proceed(2, wait=True)
    assert studio.result.history["step"] == [0, 1, 2, 3, 4, 5] and len(studio.runs) == 3
    studio.recall(0)
    assert studio.ratio.value == pytest.approx(1e-6) and studio.preview.compare_box.layout.display is None


def test_a_recalled_run_brings_back_its_images_and_can_be_saved_from_its_thumbnail(
    studio, content_image, style_image, tmp_path
):
    studio.steps.value = 2
    studio.run(wait=True)  # run 1: the arrays it started with
    png = save_image(tmp_path / "photo.png", style_image).read_bytes()
    pick_file(studio.content_upload, "photo.png", png)
    studio.style_pick.value = "sample:the_scream"
    studio.style2_pick.value = "sample:shipwreck"
    studio.ratio.value = 1e-5
    studio.run(wait=True)  # run 2: an upload, two samples
    first, second = (box.children[1].children for box in studio.strip.children)
    assert first[0].tooltip.startswith("run 1: <ndarray> in the style of <ndarray>; α/β 1.0e-03")
    assert second[0].tooltip.startswith("run 2: photo.png in the style of sample:the_scream + sample:shipwreck;")
    studio.recall(0)
    content, style = studio.inputs()
    assert content is content_image and style is style_image and studio.style2_pick.value == "off"
    assert studio.ratio.value == pytest.approx(1e-3) and studio.preview.compare_box.layout.display is None
    studio.recall(1)
    content, style = studio.inputs()
    assert studio.uploads[content]["name"] == "photo.png" and style == ["sample:the_scream", "sample:shipwreck"]
    studio.save_path.value = str(tmp_path / "out.png")
    second[1].click()  # run 2's own save button, while run 2 is also the current run
    first[1].click()  # run 1's, whatever is current
    assert "saved run 1" in studio.message.value and str(tmp_path / "out-2.png") in studio.message.value
    saved = load_image(tmp_path / "out-2.png")
    np.testing.assert_array_equal(saved, np.round(studio.runs[0].best_image * 255) / 255)


def test_stop_while_the_run_is_being_set_up_stops_it(studio, monkeypatch):
    real_start, pressed = nst.ui.studio.start, []

    def slow_start(*args, **kwargs):  # the set-up takes until Stop is pressed
        pressed.append(studio._stop.wait(60))
        return real_start(*args, **kwargs)

    monkeypatch.setattr(nst.ui.studio, "start", slow_start)
    studio.steps.value = 2000
    studio.run()
    studio.stop()  # before the run's first step and before its handle exists
    studio.wait(120)
    assert pressed == [True] and not studio.running and not studio.run_button.disabled
    result = studio.result
    assert result.stopped == "interrupted" and len(result.history["step"]) <= 2
    steps = result.metadata()["steps_done"]
    assert studio.message.value.startswith(f"stopped at step {steps}; best image kept (")
    assert studio.preview.status.value.startswith(f"stopped at step {steps}; best image kept (best loss")


def test_regions_a_mask_per_style_shown_over_the_content_then_run_and_saved(studio, content_image, tmp_path):
    """Upload one mask with two styles: the other style gets its complement;
    the regions are drawn over the content; the run and its PNG have them."""
    left = np.zeros((96, 128), np.uint8)
    left[:, :64] = 255
    data = io.BytesIO()
    Image.fromarray(left).save(data, format="PNG")
    assert studio.regions_view.layout.display == "none"  # no masks: nothing drawn (and no broken icon)
    studio.style2_pick.value = "sample:the_scream"
    pick_file(studio.mask_uploads[0], "sky.png", data.getvalue())
    masks = studio.regions(2)
    assert masks[0] in studio.uploads and load_image(masks[1])[:, :60].max() == 0  # the complement
    assert studio.regions_view.layout.display is None and uploaded(studio.mask_uploads[0].value) is None
    view = decode(studio.regions_view.value).astype(int)
    assert view.shape[:2] == (192, 256)
    assert view[:, :120, 2].mean() > view[:, :120, 0].mean() and view[:, 136:, 0].mean() > view[:, 136:, 2].mean()
    studio.steps.value = 2
    studio.run(wait=True)
    assert studio.error is None and studio.result.sources["masks"][0] == masks[0]
    saved = read_metadata(studio.save(tmp_path / "regions.png"))
    assert saved["masks"][0] == str(tmp_path / "regions-mask1.png") and (tmp_path / "regions-mask1.png").is_file()
    assert saved["uploaded"]["mask1"]["name"] == "sky.png"
    # One style with a mask: that style there, content elsewhere; no masks: a plain run.
    studio.style2_pick.value = "off"
    assert studio.regions(1) == [masks[0]]
    studio.clear_masks.click()
    assert studio.regions(1) is None and studio.regions_view.layout.display == "none"
    # A mask of another shape is refused in the status line, naming it.
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(data := io.BytesIO(), format="PNG")
    pick_file(studio.mask_uploads[0], "square.png", data.getvalue())
    assert "a mask must have the shape of the image it covers" in studio.message.value


def test_an_lbfgs_run_is_steered_and_plotted_too(content_image, style_image):
    """L-BFGS runs live as Adam does: its evaluations fill the loss plot, and
    moving alpha/beta changes the running run (it starts afresh from its last
    accepted image) rather than being ignored."""
    studio = Studio(content=content_image, style=style_image, **{**TINY, "size": 48})
    studio.optimizer.value = "lbfgs"
    studio.steps.value = 2000
    studio.run()
    deadline = time.time() + 120
    while not (studio.live and studio.live.step >= 4) and time.time() < deadline:
        time.sleep(0.01)
    assert not studio.pause_button.disabled  # L-BFGS pauses too
    studio.ratio.value = 1e-6
    while (
        not (studio.live.changes and studio.live.step > studio.live.changes[0]["step"] + 3) and time.time() < deadline
    ):
        time.sleep(0.01)
    studio.stop()
    studio.wait(60)
    h, at = studio.result.history, studio.result.changes[0]["step"]
    assert studio.result.config.optimizer == "lbfgs" and h["style_weight"][at:] == [pytest.approx(1e6)] * (
        len(h["step"]) - at
    )
    assert studio.preview.updates >= 5 and decode(studio.preview.plot.value).shape[1] > 500
