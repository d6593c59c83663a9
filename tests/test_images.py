"""Loading every kind of image as RGB in [0, 1], resizing, PNG metadata,
samples, and clear errors for files that are not images."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from nst.io import clips, images
from nst.io.images import ImageError, load_image, read_metadata, save_image


def gradient(w: int = 40, h: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), np.full_like(x, 0.5, dtype=float)], -1).astype(np.float32)


def test_path_pil_and_array_agree(tmp_path):
    array = gradient()
    path = save_image(tmp_path / "g.png", array)
    from_path = load_image(path)
    assert from_path.dtype == np.float32 and from_path.shape == (30, 40, 3)
    np.testing.assert_allclose(from_path, array, atol=0.5 / 255 + 1e-6)  # 8-bit rounding only
    np.testing.assert_array_equal(load_image(Image.open(path)), from_path)
    np.testing.assert_array_equal(load_image((from_path * 255).round().astype(np.uint8)), from_path)


def test_float_array_of_the_right_size_is_not_requantised():
    array = gradient(40, 30) * 0.999  # values between 8-bit levels
    np.testing.assert_array_equal(load_image(array, size=40), array)


def test_resize_sets_longest_side_and_keeps_aspect():
    assert load_image(gradient(40, 30), size=20).shape == (15, 20, 3)
    assert load_image(gradient(30, 40), size=80).shape == (80, 60, 3)


@pytest.mark.parametrize(
    "mode, pixel, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("LA", (0, 0), (255, 255, 255)),  # fully transparent: white
        ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("1", 1, (255, 255, 255)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, pixel, expected):
    path = tmp_path / f"im.{'tiff' if mode == 'CMYK' else 'png'}"
    Image.new(mode, (4, 3), pixel).save(path)
    np.testing.assert_allclose(load_image(path)[0, 0], np.array(expected) / 255, atol=1 / 255)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([10, 20, 30] + [200, 0, 0] * 255)
    im.putpixel((1, 1), 1)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    np.testing.assert_allclose(loaded[0, 0], [1, 1, 1])
    np.testing.assert_allclose(loaded[1, 1], np.array([200, 0, 0]) / 255)


def test_16_bit_grey_keeps_its_range(tmp_path):
    Image.fromarray(np.full((3, 4), 65535 // 4, np.uint16)).save(tmp_path / "g16.png")
    np.testing.assert_allclose(load_image(tmp_path / "g16.png"), 0.25, atol=1 / 255)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.fromarray((gradient(40, 20) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").shape == (40, 20, 3)


def test_multi_frame_uses_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    np.testing.assert_allclose(load_image(tmp_path / "a.gif")[0, 0], [1, 0, 0], atol=2 / 255)


def test_png_metadata_round_trip_and_atomic_write(tmp_path):
    meta = {"settings": {"steps": 3, "style_layers": ["block1_conv1"]}, "best_step": 2}
    path = save_image(tmp_path / "sub" / "out.png", gradient(), meta)
    got = read_metadata(path)
    assert got["settings"] == meta["settings"] and got["best_step"] == 2
    assert got["nst_version"] == images.__version__
    assert Image.open(path).info["Software"].startswith("nst ")
    assert os.listdir(path.parent) == ["out.png"]  # no temporary file left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # permissions as for any new file
    assert read_metadata(save_image(tmp_path / "plain.png", gradient())) == {"nst_version": images.__version__}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a folder"),
        (lambda p: (p.write_bytes(b""), p)[1], "file is empty"),
        (lambda p: (p.write_text("hello, not an image"), p)[1], "not a readable image"),
        (lambda p: (p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20), p)[1], "not a readable image"),
    ],
    ids=["missing", "folder", "empty", "text", "truncated"],
)
def test_bad_files_are_named_with_the_problem(tmp_path, make, message):
    path = make(tmp_path / "input.png")
    with pytest.raises(ImageError, match=message) as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_bad_arrays_are_refused():
    with pytest.raises(ImageError, match="shape"):
        load_image(np.zeros((2, 3, 3, 3)))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        load_image(np.full((2, 2, 3), 2.0))


def test_samples_come_from_nst_images(tmp_path, monkeypatch):
    save_image(tmp_path / "tubingen.jpg", gradient())  # PNG bytes: PIL goes by content
    monkeypatch.setenv("NST_IMAGES", str(tmp_path))
    assert images.sample_path("tubingen") == tmp_path / "tubingen.jpg"
    assert load_image("sample:tubingen").shape == (30, 40, 3)
    with pytest.raises(ImageError, match="unknown sample"):
        images.sample_path("mona_lisa")


def test_an_offline_sample_is_an_error_unless_stand_ins_are_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_IMAGES", str(tmp_path / "empty"))
    monkeypatch.setenv("NST_CACHE", str(tmp_path / "cache"))

    def offline(url):
        raise ImageError(f"{url}: download failed (offline).")

    monkeypatch.setattr(images, "download", offline)
    with pytest.raises(ImageError) as err:
        load_image("sample:starry_night")
    message = str(err.value)
    assert message.startswith(f"sample:starry_night is not in $NST_IMAGES ({tmp_path / 'empty'}: no such folder)")
    assert "starry_night.jpg: download failed (offline)." in message and "Check the address" not in message
    assert "NST_IMAGES to a folder that holds starry_night.jpg" in message and "NST_IMAGES=synthetic" in message
    assert not (tmp_path / "cache" / "synthetic").exists()  # nothing made up behind the user's back

    monkeypatch.setenv("NST_IMAGES", "synthetic")
    path = images.sample_path("starry_night")
    assert path.parent == tmp_path / "cache" / "synthetic"
    art = load_image(path)
    assert art.shape == (384, 512, 3) and art.std() > 0.1  # a picture, not a blank
    assert json.loads(Image.open(path).info["nst"])["synthetic_sample"] == "starry_night"


def test_download_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    source = save_image(tmp_path / "src.png", gradient())
    first = images.download(source.as_uri())
    source.unlink()
    assert images.download(source.as_uri()) == first and first.is_file()
    assert first.parent == tmp_path / "downloads"


def test_addresses_of_other_schemes_are_read_through_fsspec(tmp_path, monkeypatch):
    import fsspec  # in requirements-dev.txt

    monkeypatch.setenv("NST_CACHE", str(tmp_path))
    with fsspec.open("memory://bucket/photo.png", "wb") as f:  # as s3:// or gs:// would hold it
        f.write(save_image(tmp_path / "photo.png", gradient()).read_bytes())
    assert np.array_equal(load_image("memory://bucket/photo.png"), load_image(tmp_path / "photo.png"))
    with pytest.raises(ImageError, match="memory://bucket/gone.png: download failed"):
        load_image("memory://bucket/gone.png")
    monkeypatch.setitem(sys.modules, "fsspec", None)  # as if not installed
    with pytest.raises(ImageError, match=r"s3://bucket/a.jpg: reading s3:// addresses needs fsspec: pip install"):
        load_image("s3://bucket/a.jpg")


def test_animation_gif_has_every_frame_at_the_last_size(tmp_path):
    small, large = np.zeros((6, 8, 3), np.float32), np.ones((12, 16, 3), np.float32)
    path = clips.save_animation(tmp_path / "run.gif", [small, large, large * 0.5], fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 3 and gif.size == (16, 12) and gif.info["duration"] == 200
        gif.seek(1)
        assert np.asarray(gif.convert("RGB")).min() == 255


def test_animation_mp4_needs_no_system_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg on the path: imageio-ffmpeg's own binary
    frames = [np.full((12, 17, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
    clip = clips.open_clip(clips.save_animation(tmp_path / "run.mp4", frames, fps=5))
    assert (clip.count, clip.fps) == (3, 5.0)
    decoded = list(clip.frames())
    assert decoded[0].shape == (12, 18, 3)  # padded to an even width for yuv420p
    np.testing.assert_allclose([f[:, :17].mean() for f in decoded], [0.0, 0.5, 1.0], atol=0.03)


def test_animation_errors_say_what_to_do(tmp_path):
    frame = np.zeros((4, 4, 3), np.float32)
    with pytest.raises(images.ImageError, match="an animation is a .gif or a video"):
        clips.save_animation(tmp_path / "run.txt", [frame])
    with pytest.raises(images.ImageError, match="no frames"):
        clips.save_animation(tmp_path / "run.gif", [])
    assert not list(tmp_path.iterdir())
