"""Hypothesis strategies for forecast bodies (TSFM.ai /v1/forecast, Nixtla /v2/forecast) and the
property every answer must have: a 4xx whose detail names a field, or a 200 whose numbers are all
finite. The bodies are mostly well-formed, with hostile numbers, types and dates mixed in, so most
examples get past validation and into the model, where the interesting failures are."""

from __future__ import annotations

import json
import math

from hypothesis import strategies as st

# Values a client might send where a number is expected: ordinary ones most of the time, then
# float32/float64 extremes, non-finite literals, big integers, booleans, strings and nulls.
ordinary = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
extreme = st.sampled_from([1e308, -1e308, 3e38, -3.4e38, 1e30, -1e30, 1e29, 5e-324, 1e-300, 2**63, -(2**63),
                           10**30, math.inf, -math.inf, math.nan, 0.0, -0.0])
hostile = st.one_of(extreme, st.floats(), st.integers(min_value=-(10**40), max_value=10**40), st.booleans(),
                    st.text(max_size=3), st.none())
number = st.one_of(ordinary, ordinary, ordinary, ordinary, hostile)


def mostly(good, bad, one_in: int = 8):
    """`good`, and `bad` about once in `one_in` draws (hypothesis has no weights of its own)."""
    return st.integers(0, one_in - 1).flatmap(lambda i: bad if i == 0 else good)


count = mostly(st.integers(min_value=1, max_value=24),
               st.one_of(st.integers(min_value=-3, max_value=10**6), st.booleans(),
                         st.floats(min_value=0, max_value=30), st.just("6"), st.none()))
freq = mostly(st.sampled_from(["D", "h", "W", "MS", "15min", None]), st.sampled_from(["bogus", "", "QS-XYZ"]))


@st.composite
def values(draw, n: int) -> list:
    """n ordinary numbers; in half the draws one to three of them replaced by hostile values."""
    out = [draw(ordinary) for _ in range(n)]
    if n and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            out[draw(st.integers(0, n - 1))] = draw(hostile)
    return out
dates = st.one_of(st.sampled_from(["2020-01-01", "2021-06-30T12:00:00Z", "0001-01-01", "9999-12-31", "2262-04-10",
                                   "1677-09-21", "1677-09-22", "not a date", "", "2020-13-45"]),
                  st.datetimes().map(lambda d: d.isoformat()))
metadata = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
                        lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                st.dictionaries(st.text(max_size=3), inner, max_size=3)),
                        max_leaves=10)


@st.composite
def nixtla_body(draw) -> dict:
    n_series = draw(st.integers(min_value=1, max_value=3))
    sizes = [draw(st.integers(min_value=1, max_value=40)) for _ in range(n_series)]
    y = draw(values(sum(sizes)))
    h = draw(count)
    body: dict = {"series": {"y": y, "sizes": draw(mostly(st.just(sizes), st.lists(count, max_size=3)))},
                  "h": h, "freq": draw(freq)}
    if draw(st.booleans()):
        body["level"] = draw(st.lists(st.one_of(st.sampled_from([50, 80, 95, 99, 99.9, 99.99999999999999, 0, 100]),
                                                number), min_size=1, max_size=3))
    if draw(st.booleans()) and isinstance(h, int) and not isinstance(h, bool) and 0 < h < 50:
        k = draw(st.integers(min_value=1, max_value=2))
        body["series"]["X"] = [draw(values(len(y))) for _ in range(k + draw(st.integers(0, 1)))]
        body["series"]["X_future"] = [draw(values(n_series * h)) for _ in range(k)]
    if draw(st.integers(0, 9)) == 0:
        body["finetune_steps"] = draw(st.one_of(st.integers(0, 2), count))
    if draw(st.integers(0, 4)) == 0:
        body["feature_contributions"] = draw(st.booleans())
    return body


@st.composite
def tsfm_body(draw) -> dict:
    inputs = []
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        t = draw(st.integers(min_value=1, max_value=40))
        width = draw(st.integers(min_value=1, max_value=2))
        flat = draw(values(t * width))
        item: dict = {"target": [flat[i * width : (i + 1) * width] for i in range(t)]}
        if draw(st.booleans()):
            item["start"] = draw(mostly(st.sampled_from(["2020-01-01", "2021-06-30T12:00:00Z"]), dates, 2))
        if draw(st.integers(0, 3)) == 0:
            item["past_covariates"] = {"x": draw(values(t))}
            item["future_covariates"] = {"x": draw(values(draw(st.integers(0, 30))))}
        if draw(st.integers(0, 4)) == 0:
            item["static_covariates"] = {"s": draw(number)}
        if draw(st.integers(0, 4)) == 0:
            item["metadata"] = draw(metadata)
        inputs.append(item)
    params: dict = {"prediction_length": draw(count), "frequency": draw(freq)}
    if draw(st.booleans()):
        params["quantile_levels"] = draw(mostly(st.sampled_from([[0.1, 0.5, 0.9], [0.025, 0.975], [1e-9, 0.5]]),
                                                st.lists(number, min_size=0, max_size=4), 3))
    if draw(st.integers(0, 3)) == 0:
        params["num_samples"] = draw(st.one_of(st.integers(1, 5), count))
    if draw(st.integers(0, 3)) == 0:
        params["context_length"] = draw(count)
    return {"model": draw(mostly(st.sampled_from(["tsfm-base", "timegpt-1"]), st.just("nope"))), "inputs": inputs,
            "parameters": params}


def encode(body: dict) -> bytes:
    """JSON as a careless client writes it: NaN and Infinity as bare literals (Python's default)."""
    return json.dumps(body, allow_nan=True).encode()


def _strict_json(text: str):
    def refuse(token: str):
        raise AssertionError(f"a 200 carries the non-finite literal {token}")
    return json.loads(text, parse_constant=refuse)


def _finite_numbers(values, where: str) -> int:
    """Asserts a (nested) forecast array holds only finite numbers (no nulls); returns how many."""
    if isinstance(values, list):
        return sum(_finite_numbers(v, where) for v in values)
    assert isinstance(values, (int, float)) and not isinstance(values, bool) and math.isfinite(values), \
        f"{where} holds {values!r}"
    return 1


FIELD_ROOTS = ("body", "query", "header", "path")


def check_answer(status: int, text: str, forecast_key: str) -> str:
    """The property; returns 'ok' or '4xx' for counting. `forecast_key`: 'nixtla' or 'tsfm'."""
    assert status < 500, f"{status}: {text[:500]}"
    if status != 200:
        assert 400 <= status < 500, f"{status}: {text[:300]}"
        detail = json.loads(text)["detail"]
        assert isinstance(detail, list) and detail, text[:300]
        for item in detail:
            loc = item["loc"]
            assert loc and loc[0] in FIELD_ROOTS and item["msg"], f"error names no field: {item}"
        return "4xx"
    doc = _strict_json(text)
    if forecast_key == "nixtla":
        assert _finite_numbers(doc["mean"], "mean") > 0
        for name, values in (doc.get("intervals") or {}).items():
            _finite_numbers(values, name)
        if doc.get("weights_x") is not None:
            _finite_numbers(doc["weights_x"], "weights_x")
        for row in doc.get("feature_contributions") or []:
            _finite_numbers(row, "feature_contributions")
    else:
        for i, out in enumerate(doc["outputs"]):
            assert _finite_numbers(out["mean"], f"outputs[{i}].mean") > 0
            for q in out["quantile_predictions"]:
                _finite_numbers(q["values"], f"outputs[{i}].quantile {q['level']}")
            if "samples" in out:
                _finite_numbers(out["samples"], f"outputs[{i}].samples")
    return "ok"
