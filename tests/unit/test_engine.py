"""The in-process forecasting engine: continuous batching, bounded waiting, the model cache."""

import asyncio

import numpy as np
import pytest

from serve_apps.replica.calls import ForecastCall
from serve_apps.replica.engine import ModelEngine, Overloaded
from tests.conftest import seasonal_series
from tsfm_core.checkpoint import BASE_MODEL_DIR
from tsfm_core.predict import ForecastRequest
from tsfm_core.series import Series


def _call(seed: int) -> ForecastCall:
    return ForecastCall(ForecastRequest([Series(values=seasonal_series(96, seed=seed)[:, None])], horizon=12,
                                        levels=[0.1, 0.5, 0.9]))


def _engine(**kwargs) -> ModelEngine:
    return ModelEngine(lambda model_id: BASE_MODEL_DIR, **kwargs)


def test_concurrent_requests_share_model_passes_and_get_their_own_answers():
    engine = _engine()

    async def main():
        alone = await engine.forecast("tsfm-base", _call(0))
        together = await asyncio.gather(*(engine.forecast("tsfm-base", _call(i)) for i in range(12)))
        return alone, together
    alone, together = asyncio.run(main())
    assert engine.requests_batched == 13 and engine.passes <= 3  # 1 alone, then 12 in one or two passes
    np.testing.assert_allclose(together[0][0].quantiles, alone[0].quantiles, rtol=1e-5)
    assert not np.allclose(together[0][0].median, together[5][0].median)


def test_batching_off_runs_one_request_per_pass():
    engine = _engine(max_batch_series=1)

    async def main():
        await asyncio.gather(*(engine.forecast("tsfm-base", _call(i)) for i in range(5)))
    asyncio.run(main())
    assert (engine.passes, engine.requests_batched) == (5, 5)


def test_requests_past_the_waiting_bound_are_shed_not_queued():
    engine = _engine(max_pending=2)

    async def main():
        return await asyncio.gather(*(engine.forecast("tsfm-base", _call(i)) for i in range(6)), return_exceptions=True)
    outcomes = asyncio.run(main())
    shed = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(shed) == 4 and shed[0].retry_after_s >= 1
    assert all(isinstance(o, list) for o in outcomes[:2])


def test_model_cache_evicts_the_least_recently_used():
    engine = _engine(max_models=1)

    async def main():
        a = await engine.model("a")
        assert await engine.model("a") is a
        await engine.model("b")
        return a, await engine.model("a")
    first, again = asyncio.run(main())
    assert first is not again and list(engine.stats()["models_loaded"]) == ["a"]


def test_a_failing_model_answers_only_its_own_requests():
    def model_dir(model_id):
        if model_id == "broken":
            raise FileNotFoundError("no such model directory")
        return BASE_MODEL_DIR
    engine = ModelEngine(model_dir)

    async def main():
        return await asyncio.gather(engine.forecast("broken", _call(0)), engine.forecast("tsfm-base", _call(1)),
                                    return_exceptions=True)
    bad, good = asyncio.run(main())
    assert isinstance(bad, FileNotFoundError) and isinstance(good, list)


@pytest.mark.parametrize("n", [1, 3])
def test_points_count_every_channel(n):
    call = ForecastCall(ForecastRequest([Series(values=np.ones((10, n), dtype=np.float32))], horizon=2))
    assert call.points == 10 * n


def test_requests_past_the_waiting_bound_in_seconds_are_shed_with_their_wait():
    # Rows, not requests, are the unit: an h=64 call costs 9 model rows a series (the rollout's
    # paths), so a short queue of them can be more work than a client waits for.
    engine = _engine(max_wait_s=0.001)
    heavy = ForecastCall(ForecastRequest([Series(values=seasonal_series(256, seed=i)[:, None]) for i in range(4)],
                                         horizon=64, levels=[0.5]))

    async def main():
        await engine.forecast("tsfm-base", heavy)  # measures seconds per row
        return await asyncio.gather(*(engine.forecast("tsfm-base", heavy) for _ in range(4)), return_exceptions=True)
    outcomes = asyncio.run(main())
    shed = [o for o in outcomes if isinstance(o, Overloaded)]
    # The first finds nothing waiting and is run; the others would wait past the bound.
    assert len(shed) == 3 and not isinstance(outcomes[0], Exception)
    assert "s of work" in str(shed[0]) and shed[0].retry_after_s >= 1
    # Off (None), or a bound the work fits in: nothing is shed.
    for engine in (_engine(), _engine(max_wait_s=600)):
        async def calm():
            await engine.forecast("tsfm-base", heavy)
            return await asyncio.gather(*(engine.forecast("tsfm-base", heavy) for _ in range(4)))
        assert len(asyncio.run(calm())) == 4
