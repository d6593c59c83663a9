"""`nst figures`: every figure is written, is an image with the layout it
promises, says its settings, and shares runs instead of repeating them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BLOCK13_WEIGHTS, IMAGES
from PIL import Image

from nst.base.config import PAPER_STYLE_LAYERS
from nst.io.images import ImageError, read_metadata
from nst.io.regions import sky_mask
from nst.modes.figures import MILESTONES, NAMES, PAPER_STYLES, Figures, FigureSettings
from nst.ui import cli

WEIGHTS = str(BLOCK13_WEIGHTS) if BLOCK13_WEIGHTS.is_file() else "random"
#: Blocks 1-3 fit the grid's 16 px cells: the whole set at 32 px keeps the suite quick.
SIZE = 32 if WEIGHTS != "random" else 64


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The full quick set, made once: (Figures, written paths, log lines)."""
    lines = []
    figures = Figures(FigureSettings.quick(weights=WEIGHTS, size=SIZE), log=lines.append)
    paths = figures.make(tmp_path_factory.mktemp("figures"))
    return figures, paths, lines


def test_every_figure_is_a_png_and_progress_is_animated(made):
    _, paths, _ = made
    assert [p.name for p in paths] == [f"{name}.png" for name in NAMES] + ["progress.gif"]
    for path in paths:
        with Image.open(path) as im:
            im.verify()
    with Image.open(paths[-1]) as gif:
        assert gif.n_frames == 2  # steps 0 and 3 of a 3-step run


def test_every_figure_records_how_each_panel_was_made(made):
    figures, paths, _ = made
    for path in paths[:-1]:
        record = read_metadata(path)
        assert record["figure"] == path.stem and record["weights"] == Path(WEIGHTS).name
        assert record["panels"], path.name
        for panel in record["panels"]:
            timed = panel["preset"] == "scale-free" or panel["time_limit"]  # recipes.png: the same time, not steps
            assert panel["size"] in (SIZE, figures.settings.grid_size) and (panel["steps"] == 3 or timed)
            assert panel["optimizer"] in ("adam", "lbfgs") and panel["content_layers"] and panel["style_layers"]
            assert panel["alpha_over_beta"] > 0
    ratios = {p["alpha_over_beta"] for p in read_metadata(paths[NAMES.index("ratio_layers")])["panels"]}
    assert len(ratios) == 4  # the grid's four columns
    networks = read_metadata(paths[NAMES.index("networks")])["panels"]
    assert [(p["normalize"], p["loss_form"], p["optimizer"]) for p in networks] == [
        (None, "report", "adam"),
        ("samples", "gatys", "lbfgs"),
        ("samples", "gatys", "lbfgs"),
    ]
    assert networks[1]["alpha_over_beta"] == pytest.approx(100 * networks[2]["alpha_over_beta"])
    recipes = read_metadata(paths[NAMES.index("recipes")])["panels"]
    assert [(p["preset"], p["loss_form"], p["style_loss"], p["ema"]) for p in recipes] == [
        ("scale-free", "scaled", "w2", 0.99),
        (figures.base.preset, "report", "gram", 0.0),
        ("gatys", "gatys", "gram", 0.0),
    ]
    assert recipes[0]["time_limit"] is None and recipes[1]["time_limit"] == recipes[2]["time_limit"] > 0
    regions = read_metadata(paths[NAMES.index("regions")])["panels"]
    assert [(p["mask_mode"], p["style"].count(" + ")) for p in regions] == [("propagate", 1), ("erode", 1)]


def test_the_sky_of_the_sample_photo_is_found(content_image):
    sky = sky_mask(content_image)  # Tübingen at 128 x 96 (a made-up image without the shared photos)
    if not (IMAGES / "tubingen.jpg").is_file():
        pytest.skip("the sample photo is not in ../shared/images")
    assert sky[:10].mean() > 0.9 and sky[-40:].max() == 0  # the top is sky; the river and the town are not
    assert 0.2 < sky.mean() < 0.45


def image_axes(figure) -> list:
    return [ax for ax in figure.axes if ax.images]


def test_layouts_are_the_papers(made):
    figures, _, _ = made
    layers = [layer for layer in PAPER_STYLE_LAYERS if WEIGHTS == "random" or layer < "block4"]
    expected = {
        "report": 3,
        "styles": 1 + 2 * len(PAPER_STYLES),  # content, then each output above its style
        "ratio_layers": 4 * len(layers),
        "networks": 4,  # content, report, gatys at two ratios
        "regions": 4,  # content, the regions over it, the two mask modes
        "init": 2 + len(figures.settings.seeds),
        "color": 4,
        "progress": len([m for m in MILESTONES if m <= 3]) + 1,
        "recipes": 4,  # content, report, gatys, scale-free
    }
    for name, count in expected.items():
        assert len(image_axes(getattr(figures, name)())) == count, name
    loss = figures.loss()
    assert len(loss.axes) == 4 and all(ax.get_yscale() == "log" for ax in loss.axes)
    assert {ax.get_xlabel() for ax in loss.axes} == {"step", "wall time (s)"}


def test_titles_say_the_settings_and_runs_are_shared(made):
    figures, _, lines = made
    title = figures.report()._suptitle.get_text()
    content = "block3_conv2" if figures.partial else "block4_conv2"  # blocks 1-3 only, or the paper's layers
    assert f"{SIZE} px, 3 adam steps" in title and f"content {content}" in title
    if WEIGHTS != "random":
        assert "only VGG19 blocks 1-3" in title and figures.partial
    recipes = figures.recipes()._suptitle.get_text()  # runs of the same time, not of the same steps
    assert "s of steps each" in recipes and "adam steps" not in recipes
    # report, networks' first, color's plain run, init's content start, loss's Adam and progress are one run.
    layers = len(image_axes(figures.ratio_layers())) // 4
    distinct = (
        1 + len(PAPER_STYLES) + 4 * layers + 2 + 2 + (1 + len(figures.settings.seeds)) + 2 + 1 + 3
    )  # (regions: 2)
    assert len(figures.runs) == distinct
    assert sum(line.startswith("  run ") for line in lines) == distinct


def test_cli_only_one_and_bad_names(tmp_path, capsys):
    assert cli.main(["figures", "--quick", "--only", "report", "--out", str(tmp_path), "--weights", WEIGHTS]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.png"]
    assert "wrote 1 files" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["figures", "--only", "nothing"])
    assert cli.main(["figures", "--quick", "--size", "4", "--out", str(tmp_path)]) == 2
    assert "size must be from 16 to 8192" in capsys.readouterr().err


def test_figure_settings_are_checked_before_any_run():
    """With the full network's layers (any weights covering block5), cells
    too small for block5 are refused before the first run, naming the size."""
    too_small = Figures(FigureSettings(size=24, steps=3, weights="random"), log=lambda _: None)
    with pytest.raises(ImageError, match="figures at 16 px: .* need at least 16 px"):
        too_small.make("unused", only=("report", "ratio_layers"))
    assert too_small.runs == {}
    Figures(FigureSettings.quick(weights="random")).check()  # the smoke run fits the full network


def test_the_smoke_run_works_with_full_network_weights(tmp_path, capsys):
    assert (
        cli.main(["figures", "--quick", "--only", "ratio_layers", "--out", str(tmp_path), "--weights", "random"]) == 0
    )
    with Image.open(tmp_path / "ratio_layers.png") as im:
        assert im.width > 300
