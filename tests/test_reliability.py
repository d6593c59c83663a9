"""Reliability: odd and bad inputs made here, URLs that fail, a NaN loss,
sizes that will not fit, and property-based checks of the loader and the
settings. Each bad case must fail fast with a message naming the problem."""

from __future__ import annotations

import http.server
import os
import re
import threading

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import nst
from nst.base.config import MAX_SIZE, MIN_SIZE, Config, ConfigError
from nst.core.losses import Objective
from nst.io import images
from nst.io.images import ImageError, load_image, read_metadata, save_image
from nst.run.resources import auto_tile, check_memory, estimate_bytes
from nst.ui import cli

# -- files --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, make",
    [
        ("UPPER.PNG", lambda p: Image.new("RGB", (40, 30), "red").save(p)),
        ("photo.JPEG", lambda p: Image.new("RGB", (40, 30), "blue").save(p, "JPEG")),
        ("cmyk.jpg", lambda p: Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(p, "JPEG")),
        ("grey_alpha.png", lambda p: Image.new("LA", (40, 30), (0, 0)).save(p)),
        ("picture.webp", lambda p: Image.new("RGB", (40, 30), "green").save(p, "WEBP")),
        ("no_extension", lambda p: Image.new("RGB", (40, 30), "white").save(p, "PNG")),
        ("tiny.gif", lambda p: Image.new("P", (40, 30), 3).save(p, "GIF")),
    ],
)
def test_odd_but_valid_files_load(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    image = load_image(path, size=20)
    assert image.shape == (15, 20, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    if name == "grey_alpha.png":
        np.testing.assert_allclose(image, 1.0)  # fully transparent: white


def test_svg_and_decompression_bombs_are_refused(tmp_path):
    svg = tmp_path / "drawing.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>')
    with pytest.raises(ImageError, match=r"drawing.svg: not a readable image"):
        load_image(svg)
    big = tmp_path / "big.png"
    Image.new("L", (300, 200)).save(big)
    with pytest.raises(ImageError, match=r"300 x 200 = 60,000 pixels is over the limit of 50,000 .*max_pixels="):
        load_image(big, max_pixels=50_000)
    assert load_image(big, size=30, max_pixels=60_000).shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == images.MAX_PIXELS  # Pillow's own limit is put back after each open


def test_cli_refuses_bombs_tiny_images_and_keeps_outputs(tmp_path, capsys):
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"
    Image.new("RGB", (300, 200), "red").save(content)
    Image.new("RGB", (1000, 10), "blue").save(style)  # 512 px long: 5 px high
    out.write_bytes(b"precious")
    assert cli.main([str(content), str(content), "-o", str(out), "--max-pixels", "1000"]) == 2
    assert "over the limit of 1,000" in capsys.readouterr().err
    assert cli.main([str(content), str(style), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{style}: at 512 px its short side is 5 px, but the chosen layers need at least 16 px" in err
    assert out.read_bytes() == b"precious"  # nothing overwritten


#: Folders nothing can be written into. Under a file, no folder can be made,
#: even by root (CI runs as root); a folder without write permission stops
#: everyone else.
UNWRITABLE = ["under a file"] + (["read-only folder"] if os.geteuid() != 0 else [])


@pytest.mark.parametrize("kind", UNWRITABLE)
def test_unwritable_output_folder_is_refused_before_the_run(tmp_path, capsys, content_image, kind):
    picture = save_image(tmp_path / "p.png", content_image)
    if kind == "under a file":
        folder = picture / "out"
    else:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
    assert cli.main([str(picture), str(picture), "-o", str(folder / "out.png"), "--weights", "random"]) == 2
    err = capsys.readouterr().err
    assert f"{folder}: cannot write there (" in err and "Choose another output path" in err
    assert len(err.strip().splitlines()) == 1


# -- URLs ---------------------------------------------------------------------


#: Set when the tests are done: until then the server never answers /silent.png.
RELEASE = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    """A local server: answers at once (a 404, an HTML page), or never, so no
    case depends on how fast a loaded machine is."""

    def do_GET(self):
        if self.path == "/silent.png":
            RELEASE.wait(120)
            return
        if self.path == "/page.png":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not found, but 200</html>")
            return
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    RELEASE.set()
    httpd.shutdown()


@pytest.mark.parametrize(
    "path, message",
    [
        ("/missing.png", "download failed (HTTP Error 404"),
        ("/page.png", "the server did not send an image"),
        ("/silent.png", "download failed (timed out"),
    ],
)
def test_url_failures_are_clear_and_not_cached(server, path, message, monkeypatch):
    if path == "/silent.png":  # a server that never answers: any time limit is reached, however short
        monkeypatch.setattr(images, "URL_TIMEOUT_S", 0.5)
    with pytest.raises(ImageError, match=re.escape(message)) as err:
        load_image(server + path)
    assert str(err.value).startswith(server + path)
    assert not list((images.cache_dir() / "downloads").glob(f"*{path.strip('/')}"))


# -- the run --------------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_keeps_the_best_image(content_image, style_image, monkeypatch):
    poison = tf.Variable(1.0)
    original = Objective.__call__

    def poisoned(self, *args):
        losses = original(self, *args)
        return {**losses, "total": losses["total"] * poison}

    monkeypatch.setattr(Objective, "__call__", poisoned)

    def at_step_3(progress):
        if progress.step == 3:
            poison.assign(float("nan"))

    # (A seed of its own: an engine of its own, traced with the poisoned objective.)
    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 20, "seed": 131}, callback=at_step_3)
    assert result.stopped == "the loss became nan at step 4; kept the best image before it"
    assert len(result.history["total"]) == 5 and np.isfinite(result.best_loss) and result.best_step <= 3
    assert np.isfinite(result.best_image).all()


def test_memory_estimate_and_advice(monkeypatch):
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")  # as `import nst` sets it
    monkeypatch.delenv("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", raising=False)
    config = Config()
    assert estimate_bytes(config, 768, 1024) == pytest.approx(5.3e9, rel=0.1)  # measured peak: 5.31 GB
    assert estimate_bytes(config, 768, 1024, pooled=False) == pytest.approx(3.1e9, rel=0.1)  # measured: 3.09 GB
    assert (
        estimate_bytes(config.replace(content_layers=("block1_conv1",), style_layers=("block1_conv1",)), 768, 1024)
        < estimate_bytes(config, 768, 1024) / 2
    )
    check_memory(config, 384, 512, available=int(8e9))  # fits: no error
    # Too large: tiles give the same result in less memory, so they are the advice.
    with pytest.raises(
        ConfigError,
        match=r"needs about 4\.\d GiB .* 3\.0 GiB is available: use tile=256 \(the same "
        r"result.*, start Python with TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1 .*about 2\.\d GiB",
    ):
        check_memory(config, 768, 1024, available=3 * 2**30)
    assert (
        estimate_bytes(config.replace(tile=256), 768, 1024)
        <= 3 * 2**30
        < estimate_bytes(config.replace(tile=512), 768, 1024)
    )
    # A run already in the smallest tiles is told a size instead (the whole
    # image's own arrays, 150 bytes a pixel, no longer fit).
    tiled = config.replace(tile=128)
    with pytest.raises(ConfigError, match=r"3\.0 GiB is available: use size=(\d+) or smaller") as error:
        check_memory(tiled, 6144, 8192, available=3 * 2**30)
    fits = int(re.search(r"size=(\d+)", str(error.value)).group(1))
    assert (
        estimate_bytes(tiled, 6144 * fits // 8192, fits, pooled=True) <= 3 * 2**30 < estimate_bytes(tiled, 6144, 8192)
    )
    # Started that way, the same run fits; too little memory for either way gets no such advice.
    monkeypatch.setenv("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    check_memory(config, 768, 1024, available=3 * 2**30)
    monkeypatch.delenv("TF_ONEDNN_USE_SYSTEM_ALLOCATOR")
    with pytest.raises(ConfigError) as error:
        check_memory(tiled, 6144, 8192, available=2 * 2**30)
    assert "use size=" in str(error.value) and "TF_ONEDNN_USE_SYSTEM_ALLOCATOR" not in str(error.value)
    assert (
        auto_tile(config, 768, 1024, available=3 * 2**30) == 256
        and auto_tile(config, 384, 512, available=int(8e9)) is None
    )
    # Every loss form tiles (nst.core.tiles), the tutorial's too.
    assert auto_tile(config.replace(loss_form="tutorial"), 768, 1024, available=3 * 2**30) == 256


def test_cli_checks_memory_before_loading_tensorflow(tmp_path, monkeypatch, capsys, content_image):
    import nst.run.resources

    monkeypatch.setattr(nst.run.resources, "available_bytes", lambda: 2 * 2**30)
    picture = save_image(tmp_path / "p.png", content_image)
    assert cli.main([str(picture), str(picture), "-o", str(tmp_path / "o.png"), "--size", "2048"]) == 2
    assert "use --tile 128" in capsys.readouterr().err and not (tmp_path / "o.png").exists()
    assert (
        cli.main([str(picture), str(picture), "-o", str(tmp_path / "o.png"), "--size", "2048", "--preset", "tutorial"])
        == 2
    )
    assert "use --tile 128" in capsys.readouterr().err and not (tmp_path / "o.png").exists()  # it tiles too


# -- properties -------------------------------------------------------------------

arrays = st.one_of(
    st.tuples(
        st.integers(1, 40), st.integers(1, 40), st.sampled_from([None, 1, 3, 4]), st.sampled_from(["u8", "u16", "f32"])
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=arrays, size=st.integers(MIN_SIZE, 64), seed=st.integers(0, 2**16))
def test_any_array_loads_as_rgb_floats_of_the_asked_size(spec, size, seed):
    h, w, channels, kind = spec
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels is None else (h, w, channels)
    raw = {
        "u8": lambda: rng.integers(0, 256, shape, dtype=np.uint8),
        "u16": lambda: rng.integers(0, 65536, shape, dtype=np.uint16),
        "f32": lambda: rng.uniform(0, 1, shape).astype(np.float32),
    }[kind]()
    image = load_image(raw, size=size)
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert max(image.shape[:2]) == size and min(image.shape[:2]) >= 1
    assert 0.0 <= image.min() and image.max() <= 1.0


numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10_000),
    st.integers(),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


def test_settings_are_valid_or_refused_with_a_config_error():
    """Any values: a sound Config or a ConfigError with a message; and some
    changed settings are accepted (the property is not all refusals)."""
    accepted = []

    @given(
        changes=st.dictionaries(
            st.sampled_from(
                [
                    "size",
                    "steps",
                    "content_weight",
                    "style_weight",
                    "tv_weight",
                    "learning_rate",
                    "beta_1",
                    "beta_2",
                    "epsilon",
                    "style_scale",
                    "max_pixels",
                    "lbfgs_memory",
                    "seed",
                ]
            ),
            numbers,
            max_size=4,
        )
    )
    def check(changes):
        try:
            c = Config().replace(**changes)
        except ConfigError as e:
            assert str(e)  # a message, never another exception type
            return
        assert_sound(c)
        accepted.append(len(changes))

    check()
    assert any(accepted), "no changed settings were accepted"


def assert_sound(c: Config) -> None:
    """What every accepted Config guarantees to the engine."""
    for name in ("size", "steps", "max_pixels", "lbfgs_memory"):
        assert isinstance(getattr(c, name), int) and not isinstance(getattr(c, name), bool)
    assert MIN_SIZE <= c.size <= MAX_SIZE and c.steps >= 1 and c.max_pixels >= 1 and c.lbfgs_memory >= 1
    assert c.seed is None or (isinstance(c.seed, int) and 0 <= c.seed < 2**32)
    for name in ("content_weight", "style_weight", "tv_weight", "learning_rate", "epsilon", "style_scale"):
        value = getattr(c, name)
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1e30
    assert c.learning_rate > 0 and 0 <= c.beta_1 < 1 and 0 <= c.beta_2 < 1 and c.epsilon > 0


def test_interrupted_png_records_where_it_stopped(tmp_path, content_image, style_image):
    def stop_at_2(progress):
        if progress.step == 2:
            raise KeyboardInterrupt

    result = nst.stylize(content_image, style_image, **{**TINY, "steps": 9}, callback=stop_at_2)
    meta = read_metadata(result.save(tmp_path / "o.png"))
    assert meta["stopped"] == "interrupted" and meta["steps_done"] == 2 and meta["settings"]["steps"] == 9


def test_out_of_memory_at_the_first_scale_is_advice_and_frees_the_engine(content_image, style_image, monkeypatch):
    """A device out of memory while the first scale's engine is set up (no
    path measured first) ends as the usual advice, and leaves no engine held."""
    from nst.core import engine as engines

    held = []

    def reset(self, *args):
        held.append(self)
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(engines.Engine, "reset", reset)
    with pytest.raises(MemoryError, match=r"out of memory on .* use tile=512"):
        nst.stylize(content_image, style_image, **TINY)
    (engine,) = held
    assert engine.lock.acquire(blocking=False)  # given back
    engine.lock.release()
