"""Small statistics helpers shared by the benchmark suites.

Every suite measures a quantity several times ("runs"), summarises each run (p50/p95/p99...),
then reports the median of the runs' summaries with the min and max across runs, so one noisy
run on a shared machine neither hides nor fakes a change. Ratios are always taken against a
baseline measured in the same run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

#: The keys `summarize` produces, in display order.
SUMMARY_KEYS = ("n", "min", "p50", "p95", "p99", "max", "mean")


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, linearly interpolated between ranks.

    Args:
        values: the samples (any order); must not be empty.
        p: the percentile, 0 to 100.

    Returns:
        The interpolated value (numpy's default "linear" method).

    Raises:
        ValueError: ``values`` is empty or ``p`` is out of range.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(values: Iterable[float], digits: int = 3) -> dict[str, float]:
    """n, min, p50, p95, p99, max and mean of some samples (empty input gives ``{"n": 0}``).

    Args:
        values: the samples.
        digits: rounding of the reported figures.
    """
    data = [float(v) for v in values]
    if not data:
        return {"n": 0}
    return {
        "n": len(data),
        "min": round(min(data), digits),
        "p50": round(percentile(data, 50), digits),
        "p95": round(percentile(data, 95), digits),
        "p99": round(percentile(data, 99), digits),
        "max": round(max(data), digits),
        "mean": round(statistics.fmean(data), digits),
    }


def across_runs(
    runs: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None, digits: int = 3
) -> dict[str, dict[str, float]]:
    """For every key of the per-run summaries: the median across runs, with min and max.

    Args:
        runs: one mapping (e.g. a `summarize` result) per run.
        keys: the keys to aggregate (default: every numeric key of the first run but ``n``).
        digits: rounding.

    Returns:
        ``{key: {"median": m, "min": lo, "max": hi, "runs": count}}``.
    """
    if not runs:
        return {}
    names = (
        list(keys)
        if keys is not None
        else [k for k, v in runs[0].items() if k != "n" and isinstance(v, int | float)]
    )
    out: dict[str, dict[str, float]] = {}
    for name in names:
        values = [float(run[name]) for run in runs if run.get(name) is not None]
        if not values:
            continue
        out[name] = {
            "median": round(statistics.median(values), digits),
            "min": round(min(values), digits),
            "max": round(max(values), digits),
            "runs": len(values),
        }
    return out


def median_min_max(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    """``{"median", "min", "max", "runs"}`` of one figure measured once per run."""
    if not values:
        return {"runs": 0}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": len(values),
    }


def ratio(value: float | None, baseline: float | None, digits: int = 2) -> float | None:
    """``value / baseline`` (None when either is missing or the baseline is 0)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return round(value / baseline, digits)


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell ("-" when missing; integers without decimals)."""
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 100:
        return f"{int(value)}"
    return f"{value:.{digits}f}"


def fmt_mmm(cell: Mapping[str, float] | None, digits: int = 1) -> str:
    """A `median_min_max` / `across_runs` entry as ``median (min–max)``."""
    if not cell or "median" not in cell:
        return "-"
    if cell.get("runs", 0) <= 1 or cell["min"] == cell["max"]:
        return fmt(cell["median"], digits)
    return f"{fmt(cell['median'], digits)} ({fmt(cell['min'], digits)}–{fmt(cell['max'], digits)})"
