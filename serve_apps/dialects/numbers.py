"""Wire number types every dialect shares: strict integers and finite, bounded floats.

The model computes in float32 and scales by mean absolute deviation, so a value near float32's limit
(3.4e38) overflows inside the scaler and comes back as a forecast of nulls. Every number that enters
the model is therefore finite and within MAX_ABS_VALUE, or the request is a 422 naming the field.
Booleans are not numbers: `prediction_length: true` is refused instead of being read as 1.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field, PlainValidator, StrictFloat, StrictInt

from serve_apps.errors import ApiError
from tsfm_core.predict import ForecastResult
from tsfm_core.tokenizer import MAX_ABS_INPUT
from tsfm_core.validation import MIN_VALIDATION_HORIZON

MAX_ABS_VALUE = MAX_ABS_INPUT  # why 1e30 and not float32's 3.4e38: see tsfm_core.tokenizer


def _bounded(x: float) -> float:
    if not math.isfinite(x):
        raise ValueError("must be a finite number (Infinity and NaN are not accepted; send null for a missing value)")
    if abs(x) > MAX_ABS_VALUE:
        raise ValueError(f"must be within +-{MAX_ABS_VALUE:g}")
    return x  # an int stays an int: Nixtla spells interval keys exactly as the level was sent


# A parameter: a JSON number (int or float, not a bool or a numeric string), finite, |x| <=
# MAX_ABS_VALUE; takes Field bounds (gt, le) on top. An int stays an int.
Number = Annotated[StrictInt | StrictFloat, AfterValidator(_bounded)]
# A count (horizon, sizes, steps): an integer, never a bool.
Count = StrictInt
PositiveCount = Annotated[StrictInt, Field(ge=1)]
# tsfm-cluster's fine-tune hyperparameter (OpenAI and Cohere jobs): validation windows of the horizon
# the caller will forecast at (up to the model's output patch), as Nixtla calls get from `h`.
ValidationHorizon = Annotated[StrictInt, Field(ge=MIN_VALIDATION_HORIZON, le=4096)]


def _cell(x: Any) -> Any:
    if x is None or isinstance(x, str):
        return x
    return check_value(x)


def _optional(x: Any) -> Any:
    return None if x is None else check_value(x)


# A data value that enters the model (targets, covariates): the rule of `Number` in one validator,
# so an error's loc ends at the value itself (no union branch names appended). OptionalValue: null
# means missing.
Value = Annotated[float, PlainValidator(lambda x: check_value(x), json_schema_input_type=float)]
OptionalValue = Annotated[float | None, PlainValidator(_optional, json_schema_input_type=float | None)]

# A cell of a mixed table (Nixtla's X rows): null, a string (a category, refused later with its own
# message) or a `Value`. One validator, so an error names the cell alone, not a union's branches.
Cell = Annotated[float | str | None, PlainValidator(_cell, json_schema_input_type=float | str | None)]


def check_value(x: Any) -> float:
    """A value from an untyped place (mixed X rows): the same rule as `Value`; raises ValueError."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError("must be a number")
    return _bounded(x)


def parse_timestamp(value: str) -> pd.Timestamp:
    """An ISO date within pandas' nanosecond range (1677-09-22 .. 2262-04-11); raises ValueError.

    Dates outside it (0001-01-01, 9999-12-31 sentinels) raise OutOfBoundsDatetime, which is a
    ValueError too, or come back as a year-1 Timestamp in other units that breaks date arithmetic.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"{value!r} is not an ISO date/time") from None
    naive = ts.tz_convert(None) if ts.tz is not None else ts
    if ts is pd.NaT or not pd.Timestamp.min <= naive <= pd.Timestamp.max:
        raise ValueError(f"{value!r} is outside the supported date range {pd.Timestamp.min.date()} .. "
                         f"{pd.Timestamp.max.date()}")
    return ts.as_unit("ns")


def check_finite_forecast(result: ForecastResult, loc: list, series: str = "this series") -> None:
    """The last guard before a 200: a forecast with a non-finite number is an error naming its series.

    Bounded inputs should never get here; if the model still overflows, the client gets a clear 422
    instead of a 200 whose JSON carries nulls (json turns NaN into null, or into invalid JSON).
    """
    arrays = [result.median, result.quantiles, result.covariate_weights, result.covariate_contributions]
    if all(a is None or np.isfinite(a).all() for a in arrays):
        return
    raise ApiError(422, loc, f"the forecast for {series} is not finite: its values (or covariates) are too "
                   "large or too extreme for the model; rescale them", "non_finite_forecast")


def first_non_finite(doc: Any, path: tuple = ()) -> tuple | None:
    """The path of the first non-finite float in a JSON-able answer (dicts, lists, numbers), or None.

    Lists of plain numbers are checked with numpy, so a long forecast costs one pass in C.
    """
    if isinstance(doc, float):
        return None if math.isfinite(doc) else path
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, (list, tuple)):
        if doc and all(type(v) in (int, float) for v in doc[:8]):
            try:
                values = np.asarray(doc, dtype=np.float64)
            except (TypeError, ValueError):
                values = None
            if values is not None and values.ndim == 1:
                bad = np.flatnonzero(~np.isfinite(values))
                return None if not len(bad) else path + (int(bad[0]),)
        items = enumerate(doc)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, path + (key,))
        if found is not None:
            return found
    return None


def check_finite_answer(doc: Any, loc: list) -> None:
    """The last guard of answers built without a ForecastResult at hand (backtests, detectors, paths)."""
    where = first_non_finite(doc)
    if where is not None:
        raise ApiError(422, loc, f"the answer's {'.'.join(map(str, where))} is not finite: the series' values are "
                       "too large or too extreme for the model; rescale them", "non_finite_forecast")
