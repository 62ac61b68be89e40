"""The anchored comparison (issue 26): a confidence sequence from a fixed start, advanced pass by pass.

A decision, once reached, stands. Pure (numpy, math, stdlib). The promoter keeps one state per
comparison (a, b, scope) in the database (experiments.anchors) and advances it with the paired rows
resolved since its last pass; docs/statistics.md explains why this, unlike re-reading a sliding
window, keeps the sequence's guarantee.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from aifx import paired

FORMAT = 1  # the state's JSON layout; from_json refuses another
BLOCK = paired.block_bars()  # 24 bars of one series per block
SCOPE_ALL = "*"  # every pair and timeframe
DECISIONS = (paired.B_BETTER, paired.A_BETTER, paired.NO_MEANINGFUL_DIFFERENCE)


@dataclass
class Tail:
    """One series' progress: its last processed bar time and the partial block after it."""

    last: str = ""
    total: float = 0.0
    n: int = 0


@dataclass
class Anchored:
    """Running block sums, drawdowns and the standing decision of one comparison since its start."""

    started_at: str
    alpha: float
    min_effect: float
    s1: float = 0.0
    s2: float = 0.0
    blocks: int = 0
    bars: int = 0
    excluded: int = 0
    late: int = 0
    cum_a: float = 0.0
    peak_a: float = 0.0
    dd_a: float = 0.0
    cum_b: float = 0.0
    peak_b: float = 0.0
    dd_b: float = 0.0
    series: dict[str, Tail] = field(default_factory=dict)
    decision: str | None = None
    decided_blocks: int | None = None
    decided_bar: str | None = None


def start(started_at: datetime | str, alpha: float, min_effect: float = paired.MIN_EFFECT) -> Anchored:
    """A fresh state: no bars yet, the alpha and minimum effect fixed for its whole life."""
    if not (0.0 < alpha < 1.0 and math.isfinite(min_effect) and min_effect > 0.0):
        raise ValueError(f"alpha must lie in (0, 1) and min_effect be positive, got {alpha!r}, {min_effect!r}")
    when = started_at.isoformat() if isinstance(started_at, datetime) else str(started_at)
    return Anchored(when, float(alpha), float(min_effect))


def series_key(pair: str, timeframe: str) -> str:
    """The state's name of a (pair, timeframe) series."""
    return f"{pair}|{timeframe}"


def _time(value: Any) -> str:
    """A bar time as the sortable text the state keeps (ISO 8601 of an aware datetime, in UTC as stored)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def advance(state: Anchored, rows: Sequence[Mapping[str, Any]]) -> Anchored:
    """The state after EvaluationStore.paired() rows (bar_time order); late and excluded bars are skipped."""
    out = _copy(state)
    groups: dict[str, tuple[list[str], list[float]]] = {}
    kept_a: list[float] = []
    kept_b: list[float] = []
    for row in rows:
        key, when = series_key(row["pair"], row["timeframe"]), _time(row["bar_time"])
        tail = out.series.get(key)
        times = groups.setdefault(key, ([], []))[0]
        last = times[-1] if times else (tail.last if tail else "")
        if when <= last:  # a bar older than one already processed: skipped, so no block is reordered
            if when < last:  # equal: the series' last processed bar itself, which the promoter's query re-reads
                out.late += 1
            continue
        ra, rb, why = paired.bar_r(row)
        if why is not None:
            out.excluded += 1
            continue
        times.append(when)
        groups[key][1].append(rb - ra)
        kept_a.append(ra)
        kept_b.append(rb)
    _drawdowns(out, np.array(kept_a), np.array(kept_b))  # in bar-time order over all series
    for key in sorted(groups):
        times, diffs = groups[key]
        _blocks(out, key, times, np.array(diffs, dtype=np.float64))
    return out


def advance_series(state: Anchored, key: str, times: Sequence[str], r_a: np.ndarray, r_b: np.ndarray) -> Anchored:
    """The state after one series' bars given as sorted times and R arrays (the simulation's fast path)."""
    out = _copy(state)
    tail = out.series.get(key)
    first = bisect.bisect_right(times, tail.last) if tail else 0
    ra, rb = np.asarray(r_a, dtype=np.float64)[first:], np.asarray(r_b, dtype=np.float64)[first:]
    _drawdowns(out, ra, rb)
    _blocks(out, key, list(times[first:]), rb - ra)
    return out


def _copy(state: Anchored) -> Anchored:
    return replace(state, series={k: replace(t) for k, t in state.series.items()})


def _drawdowns(state: Anchored, ra: np.ndarray, rb: np.ndarray) -> None:
    """Each version's running cumulative R, peak and largest drawdown, over the kept bars in order."""
    state.bars += int(ra.size)
    for side, r in (("a", ra), ("b", rb)):
        if not r.size:
            continue
        cum = getattr(state, f"cum_{side}") + np.cumsum(r)
        peak = np.maximum(np.maximum.accumulate(cum), getattr(state, f"peak_{side}"))
        setattr(state, f"dd_{side}", max(getattr(state, f"dd_{side}"), float(np.max(peak - cum))))
        setattr(state, f"cum_{side}", float(cum[-1]))
        setattr(state, f"peak_{side}", float(peak[-1]))


def _blocks(state: Anchored, key: str, times: list[str], diff: np.ndarray) -> None:
    """Cut one series' new differences into 24-bar blocks after its partial block; feed each block mean."""
    tail = state.series.setdefault(key, Tail())
    if not times:
        return
    tail.last = times[-1]
    need = BLOCK - tail.n
    if diff.size < need:
        tail.total += float(diff.sum())
        tail.n += int(diff.size)
        return
    head = (tail.total + float(diff[:need].sum())) / BLOCK
    rest = diff[need:]
    k = rest.size // BLOCK
    means = np.concatenate([[head], rest[: k * BLOCK].reshape(k, BLOCK).mean(axis=1)])
    ends = [times[need - 1 + BLOCK * i] for i in range(k + 1)]
    tail.total, tail.n = float(rest[k * BLOCK :].sum()), int(rest.size - k * BLOCK)
    _feed(state, means, ends)


def _feed(state: Anchored, means: np.ndarray, ends: list[str]) -> None:
    """Add block means to the running sums; the first block at which the interval decides fixes the decision."""
    s1 = state.s1 + np.cumsum(means)
    s2 = state.s2 + np.cumsum(means * means)
    k = state.blocks + np.arange(1, means.size + 1)
    if state.decision is None:
        low, high = _interval(s1, s2, k, state.alpha)
        for i in range(means.size):  # every block is a look: the guarantee covers all of them at once
            verdict = paired.comparison_state(_num(low[i]), _num(high[i]), int(k[i]), state.min_effect)
            if verdict in DECISIONS:
                state.decision, state.decided_blocks, state.decided_bar = verdict, int(k[i]), ends[i]
                break
    state.s1, state.s2, state.blocks = float(s1[-1]), float(s2[-1]), int(k[-1])


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _interval(s1: np.ndarray, s2: np.ndarray, k: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """paired.cs_path's interval from running sums: mean +/- sd * mixture margin; NaN below 2 blocks."""
    k = np.asarray(k, dtype=np.float64)
    rho2 = paired.mixture_rho2(paired.EXPECTED_BARS / BLOCK, alpha)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / k
        var = np.maximum(s2 - s1 * mean, 0.0) / (k - 1.0)
        half = np.where(k >= 2, np.sqrt(var) * paired.mixture_margin(k, alpha, rho2), np.nan)
    return mean - half, mean + half


def interval(state: Anchored) -> tuple[float | None, float | None]:
    """The current (low, high) of the mean difference per bar, None before 2 blocks."""
    if state.blocks < 2:
        return None, None
    low, high = _interval(np.array([state.s1]), np.array([state.s2]), np.array([state.blocks]), state.alpha)
    return _num(float(low[0])), _num(float(high[0]))


def summary(state: Anchored) -> dict[str, Any]:
    """The JSON figures GET /reversal/evaluation shows as `anchored`."""
    low, high = interval(state)
    return {
        "started_at": state.started_at,
        "alpha": state.alpha,
        "min_effect": state.min_effect,
        "blocks": state.blocks,
        "block_bars": BLOCK,
        "bars": state.bars,
        "series": len(state.series),
        "excluded": state.excluded,
        "late": state.late,
        "mean_diff": state.s1 / state.blocks if state.blocks else None,
        "interval": {"low": low, "high": high},
        "drawdown_r": {"a": state.dd_a, "b": state.dd_b},
        "decision": state.decision,
        "decided_blocks": state.decided_blocks,
        "decided_bar": state.decided_bar,
    }


def to_json(state: Anchored) -> dict[str, Any]:
    """The state as plain JSON (dicts, lists, numbers, strings, None)."""
    out = {k: getattr(state, k) for k in Anchored.__dataclass_fields__ if k != "series"}
    out["series"] = {k: [t.last, t.total, t.n] for k, t in state.series.items()}
    return {"format": FORMAT, **out}


def from_json(data: Mapping[str, Any]) -> Anchored:
    """The state to_json wrote (ValueError for another format or a missing field)."""
    if data.get("format") != FORMAT:
        raise ValueError(f"anchored state format {data.get('format')!r}, expected {FORMAT}")
    values = {k: data[k] for k in Anchored.__dataclass_fields__ if k != "series"}
    series = {str(k): Tail(str(v[0]), float(v[1]), int(v[2])) for k, v in data["series"].items()}
    return Anchored(**values, series=series)


# -- multiplicity ---------------------------------------------------------------------------------


def split_alpha(alpha: float, challengers: int) -> float:
    """Each of k concurrent challengers' share of alpha (Bonferroni: the k shares add up to alpha)."""
    return alpha / max(int(challengers), 1)


def spend_share(j: int) -> float:
    """The share 6 / (pi^2 (j + 1)^2) of the j-th decision (j = 0, 1, ...); the shares add up to 1."""
    if j < 0:
        raise ValueError(f"j must be >= 0, got {j!r}")
    return 6.0 / (math.pi**2 * (j + 1) ** 2)


def anchor_alpha(alpha: float, challengers: int, j: int) -> float:
    """The alpha of a challenger's j-th anchor when k challengers are armed: alpha / k * 6 / (pi^2 (j+1)^2)."""
    return split_alpha(alpha, challengers) * spend_share(j)
