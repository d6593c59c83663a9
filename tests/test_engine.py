"""The engine (nst.core.engine): a run of a shape already seen compiles nothing,
so a loop of calls in one process keeps its memory mappings flat (XLA never
gives a compiled program's mappings back, and the kernel allows 65,530)."""

from __future__ import annotations

import pytest
from conftest import BLOCK13_LAYERS

import nst
from nst.core import engine

#: 64 px, 3 Adam steps: the issue's loop.
SMALL = {"size": 64, "steps": 3, **BLOCK13_LAYERS}


def _mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.fixture
def engines(monkeypatch) -> list[engine.Engine]:
    """Every engine a run acquires, in order."""
    seen: list[engine.Engine] = []
    real = engine.acquire
    monkeypatch.setattr(engine, "acquire", lambda *args: seen.append(real(*args)) or seen[-1])
    return seen


@pytest.mark.parametrize(
    "calls, changes",
    [(300, {}), (50, {"optimizer": "lbfgs"}), (50, {"tile": 32}), (50, {"precision": "mixed_float16"})],
    ids=["adam", "lbfgs", "tiled", "float16"],
)
def test_repeated_calls_compile_once_and_keep_the_mappings_flat(
    block13_weights, content_image, style_image, engines, calls, changes
):
    config = nst.Config(weights=str(block13_weights), **SMALL).replace(**changes)
    counts = []
    for _ in range(calls):
        result = nst.stylize(content_image, style_image, config=config)
        counts.append(_mappings())
    assert result.stopped is None and result.best_loss < result.history["total"][0]
    assert len({id(e) for e in engines}) == 1  # one engine, reused by every call
    assert max(counts[2:]) <= counts[1] * 1.02, (counts[1], max(counts[2:]))


def test_a_repeated_call_traces_nothing(block13_weights, content_image, style_image, engines):
    config = nst.Config(weights=str(block13_weights), **SMALL)
    first = nst.stylize(content_image, style_image, config=config)
    (used,) = set(engines)
    traces = [f.experimental_get_tracing_count() for f in (used.step, used.evaluate)]
    again = nst.stylize(content_image, style_image, config=config.replace(style_weight=1e4, steps=5))
    assert set(engines) == {used}
    assert [f.experimental_get_tracing_count() for f in (used.step, used.evaluate)] == traces
    # Nothing of the first run is left in it: Adam starts fresh, the weights are the new ones.
    assert int(used.optimizer.iterations.numpy()) == 5 and again.history["step"][-1] == 5
    assert again.history["total"][0] != first.history["total"][0]
    fresh = nst.stylize(content_image, style_image, config=config.replace(style_weight=1e4, steps=5, jit_compile=False))
    assert again.history["total"] == pytest.approx(fresh.history["total"], rel=1e-4)


def test_runs_of_one_shape_at_once_get_engines_of_their_own(block13_weights, content_image, style_image):
    """A live run holds its engine while it runs: a still of the same shape meanwhile gets another."""
    config = nst.Config(weights=str(block13_weights), **{**SMALL, "steps": 10_000})
    run = nst.run.live.start(content_image, style_image, config=config)
    try:
        still = nst.stylize(content_image, style_image, config=config.replace(steps=3))
        assert still.stopped is None and run.running
    finally:
        run.stop()
    assert run.result().stopped == "interrupted"
    assert run.engine.lock.acquire(blocking=False)  # released at its end
    run.engine.release()
