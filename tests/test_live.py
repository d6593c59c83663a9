"""Live runs (`nst.run.live`): steered between steps without recompiling, paused,
continued with the same Adam state, and the next run warm; L-BFGS and
coarse to fine too."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import TINY

import nst
from nst import ConfigError
from nst.run import live


def wait_for(condition, limit: float = 120.0) -> None:
    """Wait for an event of the run (a limit, not a timing: it fails only if it never comes)."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.01)


@pytest.fixture
def tiny():
    return {**TINY, "size": 48}


def test_set_takes_effect_at_the_next_step_and_is_recorded(content_image, style_image, tiny):
    run = live.start(content_image, style_image, **{**tiny, "steps": 2000})
    wait_for(lambda: run.step >= 3)
    run.set(style_weight=5e5, learning_rate=0.05)
    wait_for(lambda: run.changes and run.step >= run.changes[0]["step"] + 3)
    run.stop()
    result = run.result()
    h, change = result.history, result.changes[0]
    at = change["step"]
    assert change == {"step": at, "style_weight": 5e5, "learning_rate": 0.05}
    assert h["step"] == list(range(len(h["step"])))  # one continuous count
    assert set(h["style_weight"][:at]) == {1e3} and set(h["style_weight"][at:]) == {5e5}
    assert set(h["learning_rate"][at:]) == {0.05} and "style_layer_weights/block1_conv1" in h
    # The total is the new weights' from that step on: alpha c + beta s + gamma tv.
    k = at + 1
    assert h["total"][k] == pytest.approx(h["content"][k] + 5e5 * h["style"][k], rel=1e-5)
    assert result.config.style_weight == 5e5 and result.metadata()["changes"] == [change]
    assert result.metadata()["settings"]["style_weight"] == 5e5  # what --resume goes on with
    assert result.stopped == "interrupted" and result.best_step >= at


def test_a_bad_value_is_refused_by_set_and_the_run_goes_on(content_image, style_image, tiny):
    run = live.start(content_image, style_image, **{**tiny, "steps": 2000})
    with pytest.raises(ConfigError, match="style_weight must be a finite number"):
        run.set(style_weight=float("nan"))
    with pytest.raises(ConfigError, match="a running run takes only"):
        run.set(size=64)
    run.stop()
    assert run.result().changes == []


def test_pause_holds_the_run_and_resume_goes_on(content_image, style_image, tiny):
    run = live.start(content_image, style_image, **{**tiny, "steps": 2000})
    wait_for(lambda: run.step >= 2)
    run.pause()
    wait_for(lambda: run.paused)  # its step in flight is done
    held = run.step
    time.sleep(0.3)  # room for a step that should not come
    assert run.paused and run.step == held and run.running
    run.resume()
    wait_for(lambda: run.step > held + 2)
    run.stop()
    assert run.result().history["step"][-1] > held


def test_proceed_goes_on_with_the_same_adam_state(content_image, style_image, tiny):
    run = live.start(content_image, style_image, **{**tiny, "steps": 6})
    first = run.result()
    optimizer = run.engine.optimizer
    assert int(optimizer.iterations.numpy()) == 6
    run.proceed(4)
    more = run.result()
    assert int(optimizer.iterations.numpy()) == 10  # Adam's count went on: not a fresh Adam
    assert more.history["step"] == list(range(11)) and more.config.steps == 10
    assert more.history["total"][:6] == first.history["total"][:6]


def test_the_next_run_reuses_the_compiled_step(content_image, style_image, tiny):
    """A second run on the same graph traces nothing: its targets, weights,
    start and Adam state are assigned, and its first step is one step."""
    first = live.start(content_image, style_image, **{**tiny, "steps": 3})
    first.result()
    engine = first.engine
    traces = engine.step.experimental_get_tracing_count()
    second = live.start(content_image, style_image, **{**tiny, "steps": 3, "style_weight": 10.0})
    result = second.result()
    assert second.engine is engine and engine.step.experimental_get_tracing_count() == traces
    assert int(engine.optimizer.iterations.numpy()) == 3  # reset, then 3 updates
    assert result.history["style_weight"][0] == 10.0
    # Nothing of the first run is left in it: it is the run nst.stylize makes.
    alone = nst.stylize(content_image, style_image, **{**tiny, "steps": 3, "style_weight": 10.0})
    np.testing.assert_allclose(alone.history["total"], result.history["total"], rtol=1e-5)


def test_lbfgs_is_steered_and_starts_afresh_when_a_weight_changes(content_image, style_image, tiny):
    """L-BFGS's curvature pairs belong to one objective: after a change its
    next evaluation is at its last accepted image, under the new weights."""
    run = live.start(content_image, style_image, **{**tiny, "steps": 2000, "optimizer": "lbfgs"})
    wait_for(lambda: run.step >= 6)
    run.set(style_weight=5e5)
    wait_for(lambda: run.changes and run.step >= run.changes[0]["step"] + 6)
    run.pause()
    wait_for(lambda: run.paused)
    held = run.step
    time.sleep(0.3)  # room for an evaluation that should not come
    assert run.step == held
    run.stop()
    result = run.result()
    h, at = result.history, result.changes[0]["step"]
    assert h["step"] == list(range(len(h["step"]))) and result.stopped == "interrupted"
    assert set(h["style_weight"][:at]) == {1e3} and set(h["style_weight"][at:]) == {5e5}
    assert h["total"][at] == pytest.approx(h["content"][at] + 5e5 * h["style"][at], rel=1e-5)
    assert min(h["total"][at:]) < h["total"][at]  # and it goes on descending the new objective


def test_coarse_to_fine_runs_live_scale_after_scale(content_image, style_image, tiny):
    settings = {**tiny, "scales": (32, 48), "scale_steps": (5, 4)}
    run = live.start(content_image, style_image, **settings)
    result = run.result()
    assert result.history["size"] == [32.0] * 6 + [48.0] * 5 and run.step == 9
    run.proceed(3)  # more steps at the last scale
    more = run.result()
    assert more.history["step"][-1] == 12 and more.config.scale_steps == (5, 7)
    # The run nst.stylize makes, through the same engines.
    alone = nst.stylize(content_image, style_image, **settings)
    assert more.history["step"][:11] == alone.history["step"] and result.best_image.shape == alone.best_image.shape
    np.testing.assert_allclose(more.history["total"][:11], alone.history["total"], rtol=1e-5)
    # That run has used the engine since: the live run cannot go on from it.
    with pytest.raises(RuntimeError, match="another run of this shape has run since"):
        run.proceed(1)


def test_a_stopped_run_continues_where_it_stopped(content_image, style_image, tiny):
    run = live.start(content_image, style_image, **{**tiny, "steps": 2000})
    wait_for(lambda: run.step >= 4)
    run.stop()
    stopped = run.result()
    done = stopped.history["step"][-1]
    assert stopped.stopped == "interrupted"
    run.proceed(3)
    more = run.result()
    assert more.stopped is None and more.history["step"] == list(range(len(more.history["step"])))
    # Three updates more than the stopped run had made, then the final evaluation.
    assert more.history["step"] == list(range(int(done) + 5)) and more.config.steps == done + 4


def test_each_steerable_value_steers_the_run_and_nothing_is_traced_again(content_image, style_image, tiny):
    """Every value a slider moves (alpha, beta, gamma, the style layers'
    weights, the learning rate), each set from the run's own callback at a
    known step: it is in force from the next step, the total is made of it,
    the compiled step is not traced again, and Adam really moves by the new
    learning rate."""
    schedule = {
        3: {"content_weight": 2.0},
        6: {"style_weight": 1e4},
        9: {"tv_weight": 10.0},
        12: {"style_layer_weights": (0.5, 0.3, 0.2)},
        15: {"learning_rate": 1e-4},
    }
    handle, ready, images, traces = [], threading.Event(), {}, {}

    def steer(p: nst.Progress) -> None:
        ready.wait(60)
        images[p.step] = p.image()
        traces[p.step] = handle[0].engine.step.experimental_get_tracing_count()
        if p.step in schedule:
            handle[0].set(**schedule[p.step])

    run = live.start(content_image, style_image, **{**tiny, "steps": 20}, callback=steer)
    handle.append(run)
    ready.set()
    result = run.result()
    # Traced for the first step (if this shape had not run before), never again whatever was set.
    assert set(traces[k] for k in range(2, 21)) == {traces[2]} and traces[2] >= 1
    h = result.history
    assert [c["step"] for c in result.changes] == [k + 1 for k in schedule]  # set after step k: from k + 1
    assert [{k: v for k, v in c.items() if k != "step"} for c in result.changes] == list(schedule.values())
    for k in (2, 5, 8, 11, 14, 17):  # the settings in force at step k, and the total they make
        alpha = 2.0 if k > 3 else 1.0
        beta = 1e4 if k > 6 else 1e3
        gamma = 10.0 if k > 9 else 0.0
        assert (h["content_weight"][k], h["style_weight"][k], h["tv_weight"][k]) == (alpha, beta, gamma)
        assert h["total"][k] == pytest.approx(
            alpha * h["content"][k] + beta * h["style"][k] + gamma * h["tv"][k], rel=1e-5
        )
    layers = tiny["style_layers"]
    assert [h[f"style_layer_weights/{name}"][14] for name in layers] == pytest.approx([0.5, 0.3, 0.2])
    assert [h[f"style_layer_weights/{name}"][11] for name in layers] == pytest.approx([1 / 3] * 3)
    assert h["learning_rate"][16] == 1e-4 and h["learning_rate"][15] == pytest.approx(0.02)

    def moved(k: int) -> float:  # the largest change of a pixel from step k to k + 1
        return float(np.abs(images[k + 1] - images[k]).max())

    before, after = max(moved(k) for k in range(10, 15)), max(moved(k) for k in range(16, 19))
    assert before > 5e-3 and after < 1e-3, (before, after)  # Adam's step is about the learning rate
