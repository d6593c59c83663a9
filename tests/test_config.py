"""Settings: the paper's defaults, presets as data, validation messages."""

from __future__ import annotations

import dataclasses
import math

import pytest

import nst
from nst import PRESETS, Config, ConfigError, preset
from nst.base.config import VGG19_CONV_LAYERS


def test_defaults_are_the_reports():
    c = Config()
    assert c.content_layers == ("block4_conv2",)
    assert c.style_layers == ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
    assert c.content_weight / c.style_weight == pytest.approx(1e-3)
    assert c.layer_weights == pytest.approx((0.2,) * 5)
    assert c.size == 512 and c.loss_form == "report"
    assert c.normalize is None


def test_gatys_preset_is_the_authors_code():
    """leongatys/PytorchNeuralStyleTransfer: the normalised network, MSE of
    Gram / M and of the content, style weights 1e3 / N_l^2, L-BFGS."""
    g = preset("gatys")
    assert (g.normalize, g.loss_form, g.optimizer) == ("samples", "gatys", "lbfgs")
    assert (g.content_layers, g.style_layers) == (preset("report").content_layers, preset("report").style_layers)
    assert g.style_weight == 1e3 and g.layer_weights == (1.0,) * 5 and g.content_weight == 1.0


def test_tutorial_preset_has_the_tutorials_settings():
    t = preset("tutorial")
    assert t.content_layers == ("block5_conv2",)
    assert (t.content_weight, t.style_weight, t.tv_weight) == (1e4, 1e-2, 30.0)
    assert (t.learning_rate, t.beta_1, t.epsilon, t.loss_form) == (0.02, 0.99, 0.1, "tutorial")


def test_every_preset_is_valid_and_overridable():
    for name in PRESETS:
        assert preset(name, steps=7).steps == 7
    assert preset("blocks1-3").style_layers == ("block1_conv1", "block2_conv1", "block3_conv1")


def test_config_is_frozen_and_round_trips_through_dict():
    c = preset("tutorial", style_layer_weights=(1, 2, 3, 4, 5), seed=4)
    with pytest.raises(AttributeError):
        c.steps = 3  # type: ignore[misc]
    assert Config.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown settings: colour"):
        Config.from_dict({"colour": 1})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"steps": 0}, "steps must be from 1 to 10000000, got 0"),
        ({"size": 8}, "size must be from 16 to 8192"),
        ({"style_weight": -1.0}, "style_weight must be a finite number >= 0"),
        ({"content_weight": float("nan")}, "content_weight must be"),
        ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
        ({"beta_1": 1.0}, "beta_1 must be a finite number >= 0 and < 1"),
        (
            {"content_layers": ("block4_conv9",)},
            "unknown VGG19 layer 'block4_conv9' in content_layers; valid layers: block1_conv1",
        ),
        ({"style_layer_weights": (1.0,)}, "1 values but there are 5 style layers"),
        ({"loss_form": "mine"}, "choose one of: report, tutorial, gatys, scaled"),
        ({"init": ""}, "init must be one of content, style, noise, gray, style-mean or an image path"),
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'; choose one of: adam, lbfgs"),
        ({"pooling": "min"}, "choose one of: max, avg, l2"),
        ({"padding": "mirror"}, "choose one of: zero, replicate"),
        ({"style_loss": "sliced"}, "choose one of: gram, w2"),
        ({"ema": -0.5}, "ema must be a finite number >= 0 and < 1"),
        ({"preserve_color": "yes"}, "choose one of: luminance, histogram"),
        ({"scales": (512, 256)}, "scales must be increasing sizes ending at size=256"),
        ({"scales": (128, 256), "size": 512}, "ending at size=512"),
        ({"scales": (128, 256), "scale_steps": (10,)}, "one value per scale"),
        ({"style_blend": (0.0, 0.0)}, "positive sum"),
        ({"style_scale": 0.01}, "style_scale must keep the style image between 16 and 8192"),
        ({"content_layers": (), "style_layers": ()}, "at least one content or style layer"),
        ({"preset": "fast"}, "unknown preset 'fast'"),
    ],
)
def test_invalid_values_say_the_valid_range(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config().replace(**changes)


def test_scales_set_the_size_and_make_the_schedule():
    c = Config().replace(scales=[128, 256], scale_steps=[30, 10])
    assert c.size == 256 and list(c.schedule) == [(128, 30), (256, 10)]
    assert list(Config(steps=7).schedule) == [(512, 7)]
    assert list(Config().replace(scales=[64, 128], steps=5).schedule) == [(64, 5), (128, 5)]


def test_style_blend_is_normalised_and_must_match_the_styles():
    assert Config(style_blend=(3.0, 1.0)).blend(2) == (0.75, 0.25)
    assert Config().blend(3) == pytest.approx((1 / 3,) * 3)
    with pytest.raises(ConfigError, match="2 weights for 3 style image"):
        Config(style_blend=(1.0, 1.0)).blend(3)


def test_lists_become_tuples():
    assert Config().replace(style_layers=["block1_conv1"]).style_layers == ("block1_conv1",)
    assert all(layer in VGG19_CONV_LAYERS for layer in Config().style_layers)


#: Values that have broken validators elsewhere: NaN, infinities, negative
#: zero, huge numbers, and the wrong types.
ODD = [float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 10**30, -(10**30), True, "3", None, [1], {}, 3.5]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
@pytest.mark.parametrize("value", ODD, ids=repr)
def test_every_setting_refuses_odd_values_with_a_config_error(name, value):
    """Each field, given each odd value, is either refused with a ConfigError
    naming it or accepted as a value the engine can use."""
    try:
        c = Config().replace(**{name: value})
    except ConfigError as e:
        assert name.split("_")[0] in str(e) or name == "scales", str(e)
        return
    from test_reliability import assert_sound

    assert_sound(c)
    accepted = getattr(c, name)
    if name in INTEGER_FIELDS and accepted is not None:
        assert isinstance(accepted, int) and not isinstance(accepted, bool)
    if name in REAL_FIELDS:
        assert isinstance(accepted, (int, float)) and not isinstance(accepted, bool) and math.isfinite(accepted)


INTEGER_FIELDS = {"size", "steps", "lbfgs_memory", "max_pixels", "seed"}
REAL_FIELDS = {
    "content_weight",
    "style_weight",
    "tv_weight",
    "learning_rate",
    "beta_1",
    "beta_2",
    "epsilon",
    "style_scale",
}


def test_nan_steps_are_refused_before_anything_loads():
    import nst

    with pytest.raises(ConfigError, match="steps must be a whole number"):
        nst.stylize("sample:tubingen", "sample:starry_night", steps=float("nan"))
    for name in ("steps", "max_pixels", "lbfgs_memory"):
        with pytest.raises(ConfigError, match=f"{name} must be a whole number"):
            Config().replace(**{name: float("nan")})


def test_a_misspelt_setting_is_named_with_the_nearest_one(content_image, style_image):
    with pytest.raises(ConfigError, match=r"unknown setting 'stlye_weight' \(did you mean 'style_weight'\?\)"):
        nst.stylize(content_image, style_image, stlye_weight=1)
    with pytest.raises(ConfigError, match=r"unknown setting 'zzz'$"):
        nst.stylize_many([nst.Job(content_image, style_image, {"zzz": 1})])


def test_every_setting_declares_its_roles_and_option():
    """A field added without `setting(...)` fails here, before any list of
    settings (compiled program, batch, live, targets, options) misses it."""
    from nst.base.config import Role, named

    for field in dataclasses.fields(Config):
        assert {"roles", "flag", "parse", "help", "check"} <= set(field.metadata), (
            f"{field.name}: declare it with setting()"
        )
        assert callable(field.metadata["check"]), field.name
        assert all(isinstance(role, Role) for role in field.metadata["roles"])
    assert set(named(Role.MEASURED)) == {"precision", "jit_compile", "pooling_op"}


def test_every_option_reaches_its_setting():
    """Each flag read from the fields' declarations sets its own field, and
    only it (a number halved, a switch turned, a name taken or refused by name)."""
    from nst.base.config import OPTIONS
    from nst.ui.options import build_parser, config_from

    base = preset("report")
    parser = build_parser()
    for flag, (name, parse, _) in OPTIONS.items():
        default = getattr(base, name)
        if parse is bool:
            argv, expected = [flag if not default else "--no-" + flag[2:]], not default
        elif parse in (int, float) and isinstance(default, (int, float)) and not isinstance(default, bool):
            expected = parse(default / 2) if default else 0.5
            argv = [flag, str(expected)]
        elif parse is str:  # a name: taken as it is (a path), or refused naming the setting
            try:
                changed = config_from(parser.parse_args(["c.jpg", "s.jpg", flag, "zz"]))
            except ConfigError as e:
                assert str(e).startswith(("zz", name)) or f" {name}" in str(e), (flag, str(e))
                continue
            argv, expected = [flag, "zz"], ("zz",) if isinstance(default, tuple) else "zz"
        else:
            continue
        changed = config_from(parser.parse_args(["c.jpg", "s.jpg", *argv]))
        assert getattr(changed, name) == expected, flag
        assert changed.replace(**{name: default}) == base, f"{flag} changed more than {name}"
