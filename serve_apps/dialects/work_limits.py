"""Per-request work limits shared by the dialects: series, input points and output values.

A request past a limit is a 413 naming the field that carries the work, checked before any model
work is queued, so one caller cannot build a response of hundreds of megabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from serve_apps.errors import ApiError


@dataclass(frozen=True)
class WorkLimits:
    max_series: int
    max_points: int
    max_output_values: int

    def check(self, *, series: int, points: int, output_values: int, series_loc: list, points_loc: list,
              output_loc: list) -> None:
        for value, limit, loc, what in ((series, self.max_series, series_loc, "series"),
                                        (points, self.max_points, points_loc, "input points"),
                                        (output_values, self.max_output_values, output_loc, "output values")):
            if value > limit:
                raise ApiError(413, loc, f"request has {value} {what}; the limit is {limit}", "too_large")
