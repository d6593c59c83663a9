"""Reliability, round 2: a corpus of hostile and broken inputs made here,
signals at each moment of a run, outputs that would destroy an input, and
writes that fail. Every case must end as one line on stderr with the right
exit status, never a traceback, and never lose a finished image."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

import nst.core.engine
import nst.run.optimize
from nst.base.config import Config, ConfigError
from nst.core import moments
from nst.io import images
from nst.io.images import ImageError, load_image, read_metadata, save_image
from nst.io.weights import WeightsError, check_weights, vgg19_shapes
from nst.ui import cli, options

FAST = [
    "--size",
    "32",
    "--steps",
    "3",
    "--weights",
    "random",
    "--quiet",
    "--seed",
    "0",
    "--style-layers",
    "block1_conv1",
    "--content-layers",
    "block1_conv2",
]


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, content_image, style_image):
    folder = tmp_path_factory.mktemp("inputs")
    return str(save_image(folder / "content.png", content_image)), str(save_image(folder / "style.png", style_image))


#: A warning (random weights, say) is not a failure: one line of its own.
WARNING = re.compile(r"nst( \w+)?: warning: ")


def said(line: str) -> bool:
    """Whether ``line`` is one of nst's own lines about how the run ended."""
    return line.startswith("nst") and not WARNING.match(line)


def one_line_error(capsys, status: int, code: int) -> str:
    """The run's stderr, checked to be a single 'nst: ...' line and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not WARNING.match(line)]
    assert status == code, err
    assert len(lines) == 1 and lines[0].startswith("nst"), err
    assert "Traceback" not in err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files left in ``folder`` (nst writes to dot-files and renames)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- images: a corpus of damaged files, each one line ---------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + png_chunk(b"IEND", b"")
    )


def encoded(kind: str) -> bytes:
    buffer = io.BytesIO()
    gradient = np.linspace(0, 255, 48 * 64 * 3).reshape(48, 64, 3).astype(np.uint8)
    Image.fromarray(gradient).save(buffer, kind)
    return buffer.getvalue()


def test_a_png_over_pillows_own_hard_limit_is_one_line(tmp_path, pictures, capsys):
    """Pillow raises DecompressionBombError at twice its limit, while opening;
    nst's own limit (and --max-pixels) is what the user sees."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(20_000, 20_000))  # over twice Pillow's default limit
    line = one_line_error(capsys, cli.main([str(bomb), pictures[1], "-o", str(tmp_path / "o.png"), *FAST]), 2)
    assert "400,000,000 pixels is over the limit" in line and "--max-pixels" in line
    with pytest.raises(ImageError, match="bomb.png: not a readable image"):  # allowed, then found to be truncated
        load_image(bomb, max_pixels=10**9)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow warns, then decodes the pixels
@pytest.mark.parametrize("kind", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO"])
def test_damaged_files_of_every_format_load_or_are_refused(tmp_path, kind):
    """Truncations and flipped bytes of real encodings: each either decodes
    to an RGB image or is an ImageError naming the file; nothing else."""
    data = encoded(kind)
    rng = np.random.default_rng(sum(map(ord, kind)))
    variants = [data[:n] for n in (8, 16, 33, len(data) // 3, len(data) // 2, len(data) - 10)]
    for _ in range(24):
        damaged = bytearray(data)
        for at in rng.integers(0, len(data), rng.integers(1, 6)):
            damaged[at] = int(rng.integers(0, 256))
        variants.append(bytes(damaged))
    refused = 0
    for n, variant in enumerate(variants):
        path = tmp_path / f"damaged{n}.{kind.lower()}"
        path.write_bytes(variant)
        try:
            image = load_image(path, size=32)
        except ImageError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            refused += 1
        else:
            assert image.ndim == 3 and image.shape[2] == 3 and np.isfinite(image).all()
    assert refused >= 6  # at least the truncations to a bare header


def test_absurd_text_chunks_are_refused_not_read(tmp_path):
    """A PNG with a 100 MB compressed text chunk (a zip bomb in the metadata)."""
    path = tmp_path / "text.png"
    body = encoded("PNG")
    bomb = png_chunk(b"zTXt", b"nst\0\0" + zlib.compress(b"{" * 100_000_000, 9))
    path.write_bytes(body[:33] + bomb + body[33:])
    for read in (read_metadata, load_image):
        with pytest.raises(ImageError, match="text.png"):
            read(path)


# -- weights: broken and hostile files ----------------------------------------


def weights_file(path: Path, layers: int = 3, **changes) -> Path:
    """An .npz of the first ``layers`` convolutions (zeros), with ``changes``
    (key -> array, or None to leave the key out)."""
    arrays = {}
    for layer, (kernel, bias) in list(vgg19_shapes().items())[:layers]:
        arrays[f"{layer}/kernel"], arrays[f"{layer}/bias"] = np.zeros(kernel, np.float32), np.zeros(bias, np.float32)
    for key, value in changes.items():
        arrays.pop(key) if value is None else arrays.__setitem__(key, value)
    np.savez(path, **arrays)
    return path


def damaged_member(path: Path) -> Path:
    """A zip whose table of contents is intact but one member's compressed
    data is not."""
    rng = np.random.default_rng(0)
    arrays = {
        f"{layer}/{part}": rng.normal(size=shape).astype(np.float32)
        for layer, shapes in list(vgg19_shapes().items())[:3]
        for part, shape in zip(("kernel", "bias"), shapes)
    }
    np.savez_compressed(path, **arrays)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("block1_conv2/kernel.npy")
    data = bytearray(path.read_bytes())
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(data)
    return path


BAD_WEIGHTS = {
    "no bias": (lambda p: weights_file(p, **{"block1_conv2/bias": None}), "block1_conv2 has no bias"),
    "pickled": (lambda p: weights_file(p, **{"block1_conv1/kernel": np.array([{"x": 1}], dtype=object)}), "pickled"),
    "NaN": (lambda p: weights_file(p, **{"block2_conv1/bias": np.full(128, np.nan, np.float32)}), "NaN or infinite"),
    "infinity": (
        lambda p: weights_file(p, **{"block1_conv1/kernel": np.full((3, 3, 3, 64), np.inf, np.float32)}),
        "NaN or infinite",
    ),
    "wrong shape": (
        lambda p: weights_file(p, **{"block1_conv2/kernel": np.zeros((3, 3, 64, 32), np.float32)}),
        "VGG19's is (3, 3, 64, 64)",
    ),
    "integers": (lambda p: weights_file(p, **{"block1_conv1/bias": np.zeros(64, np.int64)}), "not floating point"),
    "missing layer": (lambda p: weights_file(p, layers=2), "no weights for layer block2_conv1"),
    "truncated": (lambda p: p.write_bytes(weights_file(p).read_bytes()[:5000]) and p, "not a readable .npz"),
    "damaged member": (damaged_member, "not a readable .npz"),
    "empty zip": (lambda p: zipfile.ZipFile(p, "w").close() or p, "no weights for layer block1_conv1"),
    "text": (lambda p: p.write_text("kernel") and p, "not a readable .npz"),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_broken_weight_files_are_refused_before_the_run(tmp_path, pictures, capsys, case):
    make, message = BAD_WEIGHTS[case]
    path = make(tmp_path / "weights.npz")
    with pytest.raises(WeightsError, match=re.escape(message)):
        check_weights(path, ("block2_conv1",))
    args = [*pictures, "-o", str(tmp_path / "o.png"), *FAST, "--weights", str(path), "--style-layers", "block2_conv1"]
    line = one_line_error(capsys, cli.main(args), 2)
    assert str(path) in line and message in line
    assert not (tmp_path / "o.png").exists()


def test_broken_h5_files_are_refused(tmp_path):
    h5py = pytest.importorskip("h5py")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(WeightsError, match="not a readable .h5"):
        check_weights(garbage, ("block1_conv1",))
    small = tmp_path / "small.h5"
    with h5py.File(small, "w") as f:
        f["block1_conv1/kernel"] = np.zeros((3, 3, 3, 64), np.float32)
        f["block1_conv1/bias"] = np.zeros(64, np.float32)
    check_weights(small, ("block1_conv1",))
    with pytest.raises(WeightsError, match=r"no VGG19 weights of shape \(3, 3, 64, 64\)"):
        check_weights(small, ("block1_conv2",))
    with h5py.File(small, "a") as f:
        f["block1_conv1/bias"][3] = np.nan
    with pytest.raises(WeightsError, match="NaN"):
        check_weights(small, ("block1_conv1",))


# -- settings and usage ---------------------------------------------------------


@pytest.mark.parametrize("args", [["--sizee", "3"], ["--size", "big"], ["--optimizer", "sgd", "--steps"], []])
def test_usage_mistakes_are_one_line(pictures, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*(pictures if args else []), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1 and "see nst --help" in err


def test_recorded_settings_round_trip_or_are_refused():
    """Any JSON a PNG might record as settings: a Config that writes back to
    the same dict, or a ConfigError; never another exception. Some
    non-empty ones are accepted (the property is not all refusals)."""
    accepted = []

    @given(
        st.dictionaries(
            st.sampled_from([f.name for f in Config.__dataclass_fields__.values()]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                lambda inner: st.lists(inner, max_size=3),
                max_leaves=6,
            ),
        )
    )
    def check(values):
        try:
            config = Config.from_dict(values)
        except ConfigError:
            return
        assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        accepted.append(len(values))

    check()
    assert any(accepted), "no non-empty settings were accepted"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), JSON, max_size=6))
def test_metadata_round_trips_through_a_png(tmp_path_factory, meta):
    path = save_image(tmp_path_factory.mktemp("meta") / "m.png", np.zeros((4, 4, 3), np.float32), meta)
    assert read_metadata(path) == {"nst_version": nst.__version__, **meta}


# -- --resume: damaged and foreign records ------------------------------------


def png_with_record(path: Path, text: str) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text(images.METADATA_KEY, text)
    Image.new("RGB", (40, 30), "grey").save(path, pnginfo=info)
    return path


def resumable(pictures, tmp_path) -> dict:
    """The record of a real interrupted run."""
    first = nst.stylize(
        *pictures,
        size=32,
        steps=4,
        weights="random",
        seed=0,
        style_layers=("block1_conv1",),
        content_layers=("block1_conv2",),
        callback=lambda p: p.step == 2 and _interrupt(),
    )
    return read_metadata(first.save(tmp_path / "first.png"))


def _interrupt():
    raise KeyboardInterrupt


DAMAGED_RECORDS = {
    "not JSON": lambda meta: "{settings: oops",
    "a list": lambda meta: "[1, 2]",
    "deeply nested": lambda meta: "[" * 100_000 + "]" * 100_000,
    "settings not a table": lambda meta: json.dumps({**meta, "settings": "report"}),
    "settings out of range": lambda meta: json.dumps({**meta, "settings": {**meta["settings"], "steps": -4}}),
    "unknown setting": lambda meta: json.dumps({**meta, "settings": {**meta["settings"], "rm -rf": 1}}),
    "steps done": lambda meta: json.dumps({**meta, "steps_done": "2; import os"}),
    "styles": lambda meta: json.dumps({**meta, "styles": "style.png"}),
    "Adam's base64": lambda meta: json.dumps({**meta, "adam": {**meta["adam"], "velocity": "%%%"}}),
    "Adam's shape": lambda meta: json.dumps({**meta, "adam": {**meta["adam"], "shape": [10**6, 10**6, 3]}}),
    "Adam's pool": lambda meta: json.dumps({**meta, "adam": {**meta["adam"], "pool": 10**6, "shape": [1, 1, 3]}}),
    "Adam's size": lambda meta: json.dumps(
        {**meta, "adam": {**meta["adam"], "velocity": base64.b64encode(b"ab").decode()}}
    ),
}


@pytest.mark.parametrize("case", list(DAMAGED_RECORDS))
def test_resume_refuses_damaged_records_in_one_line(pictures, tmp_path, capsys, case):
    meta = resumable(pictures, tmp_path)
    assert "adam" in meta  # what the Adam cases damage
    target = png_with_record(tmp_path / "damaged.png", DAMAGED_RECORDS[case](meta))
    before = target.read_bytes()
    capsys.readouterr()
    line = one_line_error(capsys, cli.main(["--resume", str(target), "--quiet"]), 2)
    assert str(target) in line
    assert target.read_bytes() == before


def test_adam_records_round_trip_small_and_never_below_the_real_moments():
    velocity = np.random.default_rng(0).uniform(0, 1e3, (37, 50, 3)).astype(np.float32)
    velocity[0, 0, 0] = 0.0
    iterations, pool, pooled = moments.unpack_moments(moments.pack_moments(velocity, 12), "x.png")
    back = moments.expand_moments(pool, pooled, 37, 50)
    assert iterations == 12 and back.shape == velocity.shape
    assert np.all(back >= velocity) and back.max() <= 1.01 * velocity.max()  # pooled maxima, rounded up
    assert moments.expand_moments(pool, pooled, 80, 50) is None  # a record made at another size
    large = moments.pack_moments(np.ones((2048, 2048, 3), np.float32), 1)
    assert large["pool"] == 16 and len(json.dumps(large)) < 300_000  # bounded, at any size


#: Records nst might have written, some damaged: the report's settings with
#: a few values replaced by any JSON, named inputs, any steps done.
RECORDS = st.fixed_dictionaries(
    {
        "settings": st.dictionaries(
            st.sampled_from(["steps", "size", "style_weight", "optimizer"]), JSON, max_size=2
        ).map(lambda changes: {**Config().to_dict(), **changes}),
        "content": st.text(min_size=1),
        "style": st.text(min_size=1),
    },
    optional={"steps_done": JSON | st.integers(0, 600)},
)


def test_resume_takes_any_record_or_refuses_it(tmp_path_factory):
    """Whatever JSON the nst record holds: the resumed settings, or an
    ImageError / ConfigError, before anything runs; and records like nst's
    own are accepted (the property is not all refusals)."""
    accepted = []

    @given(JSON | RECORDS)
    def check(record):
        path = png_with_record(tmp_path_factory.mktemp("record") / "r.png", json.dumps(record))
        args = options.build_parser().parse_args(["--resume", str(path)])
        try:
            config = options.resume(args)
        except (ImageError, ConfigError):
            return
        assert isinstance(config, Config) and config.init == str(path.resolve())
        accepted.append(record)

    check()
    assert accepted, "no record was accepted"


# -- outputs: never destroy an input, find every problem before the run ------------


@pytest.mark.parametrize("role", ["content", "style", "init"])
def test_an_output_that_is_an_input_is_refused_or_written_beside_it(pictures, tmp_path, capsys, role):
    content, style = (str(save_image(tmp_path / name, load_image(p))) for name, p in zip(("c.png", "s.png"), pictures))
    init = str(save_image(tmp_path / "i.png", load_image(content)))
    target = {"content": content, "style": style, "init": init}[role]
    before = Path(target).read_bytes()
    args = [content, style, "--init", init, *FAST, "-o", target]
    line = one_line_error(capsys, cli.main(args), 2)
    assert f"is the {'--init' if role == 'init' else role} image" in line and "--force" in line
    assert cli.main([*args, "--force"]) == 0
    assert Path(target).read_bytes() == before
    assert read_metadata(Path(target).with_name(Path(target).stem + "-2.png"))["steps_done"] == 3


def test_output_problems_are_found_before_the_run(pictures, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nst.run.optimize, "stylize", lambda *a, **k: pytest.fail("the run started"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "folder.png").mkdir()
    cases = {
        str(blocker / "out.png"): "cannot write there",
        str(tmp_path / "folder.png"): "is a folder",
        str(tmp_path / "out.jpg"): "must be a .png",
    }
    for output, message in cases.items():
        assert message in one_line_error(capsys, cli.main([*pictures, *FAST, "-o", output]), 2)
    gif = tmp_path / "style.gif"
    Image.open(pictures[1]).save(gif)
    line = one_line_error(capsys, cli.main([pictures[0], str(gif), *FAST, "--animate", str(gif)]), 2)
    assert "style.gif: is the style image" in line
    line = one_line_error(capsys, cli.main([*pictures, *FAST, "--animate", str(tmp_path / "a.txt")]), 2)
    assert "--animate writes a .gif or a video (.mp4" in line


def test_resume_into_its_own_file_keeps_it_until_the_new_one_is_complete(pictures, tmp_path, monkeypatch, capsys):
    saved = nst.stylize(
        *pictures,
        size=32,
        steps=4,
        weights="random",
        seed=0,
        style_layers=("block1_conv1",),
        content_layers=("block1_conv2",),
    ).save(tmp_path / "run.png")
    before = saved.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images, "write_atomic", full_disk)
    assert cli.main(["--resume", str(saved), "--steps", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert saved.read_bytes() == before  # the old PNG, whole


def test_a_failed_write_keeps_the_image_elsewhere_and_says_where(pictures, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out.png"
    real = images.write_atomic

    def fail_for_out(path, data):
        if Path(path) == out:
            raise PermissionError(13, "Permission denied", str(path))
        real(path, data)

    monkeypatch.setattr(images, "write_atomic", fail_for_out)
    line = one_line_error(capsys, cli.main([*pictures, *FAST, "-o", str(out)]), 1)
    kept = Path(line.split("the image is kept as ")[1])
    assert "out.png: cannot be written (Permission denied)" in line
    assert read_metadata(kept)["steps_done"] == 3


def test_an_unforeseen_error_is_one_line_and_debug_shows_the_traceback(pictures, tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(nst.core.engine, "acquire", broken)
    args = [*pictures, *FAST, "-o", str(tmp_path / "o.png")]
    line = one_line_error(capsys, cli.main(args), 1)  # during the run: status 1
    assert "ZeroDivisionError: a bug" in line and "--debug" in line
    assert cli.main([*args, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


# -- file names that are not UTF-8 ------------------------------------------------


def test_file_names_that_are_not_utf8(pictures, tmp_path):
    if sys.platform != "linux":
        pytest.skip("bytes file names are a POSIX matter")
    folder = os.fsencode(tmp_path)
    content = folder + b"/caf\xe9.png"  # Latin-1, not UTF-8
    Path(os.fsdecode(content)).write_bytes(Path(pictures[0]).read_bytes())
    out = folder + b"/r\xe9sultat.png"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [sys.executable, "-m", "nst", content, pictures[1].encode(), "-o", out, *map(str.encode, FAST)],
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr and b"r\\udce9sultat.png" in done.stdout
    assert read_metadata(os.fsdecode(out))["content"] == os.fsdecode(content)
    missing = subprocess.run(
        [sys.executable, "-m", "nst", folder + b"/\xff.png", content, "-o", out],
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1 and b"no such file" in missing.stderr


# -- signals at every moment -------------------------------------------------------


def terminate_during(monkeypatch, module, name):
    """Make ``module.name`` send this process SIGTERM, then do its work."""
    real = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)


@pytest.mark.parametrize(
    "module, name, written",
    [
        ("nst.run.preflight", "check_weights", []),  # checking inputs, before TensorFlow
        ("nst.core.features", "_vgg19", []),  # building the model
        ("nst.core.features", "_randomise", []),  # loading the weights
        ("nst.run.driver", "for_job", []),  # computing the targets
        ("nst.core.engine", "acquire", []),  # the compiled programs set up: nothing made yet
        ("nst.run.driver", "adam", ["out.png"]),  # the loop (its first step compiles): the start image is kept
        # A checkpoint being written completes; the run stops there and what
        # it made is written (a second signal meanwhile waits until then).
        ("nst.io.images", "write_atomic", ["anim.gif", "out-00000.png", "out.png"]),
        ("nst.ui.cli", "write_results", ["anim.gif", "out-00000.png", "out-00002.png", "out.png"]),  # all complete
        ("nst.ui.cli", "save_animation", ["anim.gif", "out-00000.png", "out-00002.png", "out.png"]),  # so does this
    ],
)
def test_sigterm_at_any_moment(pictures, tmp_path, monkeypatch, capsys, module, name, written):
    """Whatever is under way: exit 143, one line on stderr and no traceback,
    every finished file complete, no temporary file left behind."""
    import importlib

    nst.core.features.get_extractor.cache_clear()  # so that the model is built and loaded again
    terminate_during(monkeypatch, importlib.import_module(module), name)
    out = tmp_path / "out.png"
    status = cli.main([*pictures, *FAST, "-o", str(out), "--save-every", "2", "--animate", str(tmp_path / "anim.gif")])
    assert status == 143
    out_err = capsys.readouterr()
    said_lines = [line for line in (out_err.out + out_err.err).splitlines() if said(line)]
    # Said, never silent: the summary ("stopped early: interrupted") once the
    # result is written, and/or one line on stderr naming what was kept.
    assert "Traceback" not in out_err.err and any("interrupted" in line for line in said_lines), out_err
    for stream in (out_err.out, out_err.err):
        assert len([line for line in stream.splitlines() if said(line)]) <= 1, out_err
    assert sorted(p.name for p in tmp_path.iterdir()) == written
    for path in tmp_path.iterdir():
        Image.open(path).load()  # complete


def test_sigint_during_import_is_one_line(pictures, tmp_path):
    """Ctrl-C while TensorFlow is being imported (the slowest moment)."""
    code = (
        "import builtins, os, signal, sys\nimport nst.ui.cli\nreal = builtins.__import__\n"
        "def hooked(name, *args, **kwargs):\n"
        "    if name == 'nst.run.optimize':\n        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = hooked\nsys.exit(nst.ui.cli.main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *pictures, *FAST, "-o", str(tmp_path / "o.png")],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "nst: interrupted; nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_a_run_ends_without_the_interpreters_teardown(pictures, tmp_path):
    """Once TensorFlow ran, `nst` leaves through ``os._exit`` (see
    `nst.ui.failure.end`: the teardown races TensorFlow's threads), with every
    line of its output flushed and its status kept; an exit handler, which
    runs in that teardown, never runs."""
    code = "import atexit, sys\natexit.register(print, 'TEARDOWN')\nfrom nst.ui.cli import console\nconsole()"
    out = tmp_path / "out.png"
    done = subprocess.run(
        [sys.executable, "-c", code, *pictures, *FAST, "-o", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "TEARDOWN" not in done.stdout and f"wrote {out}" in done.stdout and out.exists()


# -- the studio --------------------------------------------------------------------


def test_the_studio_says_what_failed_in_one_line_and_stays_usable(content_image, style_image, tmp_path):
    """A run that fails (weights that turn out broken), a second Run click
    while one runs, a save that cannot be written: each is one line in the
    page, and the next Run works."""
    from conftest import TINY

    from nst.ui.studio import Studio

    broken = weights_file(tmp_path / "broken.npz", layers=8, **{"block1_conv2/bias": np.full(64, np.nan, np.float32)})
    studio = Studio(content=content_image, style=style_image, **{**TINY, "weights": str(broken)})
    studio.run(wait=True)
    message = studio.message.value
    assert isinstance(studio.error, WeightsError) and "run failed: " in message and "NaN" in message
    assert "\n" not in message and "&lt;layer&gt;/kernel" in message  # escaped, not eaten as a tag
    assert not studio.run_button.disabled and studio.stop_button.disabled
    studio.config, studio.steps.value = studio.config.replace(weights="random"), 400
    studio.run()
    first = studio._thread
    studio.run()  # a second click while it runs: ignored, the first goes on
    assert studio._thread is first
    studio.stop()
    studio.wait()
    assert studio.error is None and studio.result is not None and not studio.run_button.disabled
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert studio.save(str(blocker / "out.png")) is None
    assert "not saved: " in studio.message.value and "Traceback" not in studio.message.value
    assert studio.save(str(tmp_path / "out.png")) == tmp_path / "out.png"

    def bug(*args):
        raise ZeroDivisionError("a bug")

    studio._work = bug  # something nobody foresaw, in the run's thread
    studio.run(wait=True)
    assert isinstance(studio.error, ZeroDivisionError) and not studio.run_button.disabled
    assert "run failed: ZeroDivisionError: a bug (unexpected: the traceback is in the studio" in studio.message.value


def test_nst_figures_fails_in_one_line_before_any_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nst.run.optimize, "stylize", lambda *a, **k: pytest.fail("a run started"))
    broken = weights_file(tmp_path / "w.npz", layers=8, **{"block3_conv1/kernel": np.zeros((3, 3, 128, 8), np.float32)})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = {
        ("--weights", str(broken)): "block3_conv1/kernel has shape (3, 3, 128, 8)",
        ("--weights", "random", "--out", str(blocker)): "cannot write there",
    }
    for args, message in cases.items():
        status = cli.main(["figures", "--quick", *args])
        err = capsys.readouterr().err
        assert (
            status == 2
            and message in err
            and len(err.strip().splitlines()) == 1
            and err.startswith("nst figures: error:")
        ), err


def test_a_sweep_never_writes_over_an_input(pictures, tmp_path, capsys):
    content = save_image(tmp_path / "out-seed-1.png", load_image(pictures[0]))
    before = content.read_bytes()
    args = [str(content), pictures[1], *FAST, "-o", str(tmp_path / "out.png"), "--sweep", "seed=0,1"]
    assert "out-seed-1.png: is the content image" in one_line_error(capsys, cli.main(args), 2)
    assert content.read_bytes() == before


def test_an_interrupted_figure_run_ends_the_whole_set(tmp_path, monkeypatch, capsys):
    """Ctrl-C during `nst figures` stops it (stylize keeps a run's best image
    and returns; the set must not go on to the next run)."""
    calls = []

    def interrupted(content, style, *, config, callback, masks):
        calls.append(style)
        image = load_image(content, size=config.size)
        return nst.run.optimize.Result(
            image=image,
            best_image=image,
            best_step=0,
            best_loss=1.0,
            history={},
            timings={},
            config=config,
            sources={},
            stopped="interrupted",
        )

    monkeypatch.setattr(nst.run.optimize, "stylize", interrupted)
    assert cli.main(["figures", "--quick", "--weights", "random", "--out", str(tmp_path)]) == 130
    assert len(calls) == 1 and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err.strip().splitlines()[-1] == "nst figures: interrupted; nothing was written"
