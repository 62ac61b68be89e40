"""Live figures of the evaluation log: one version's aggregates over its decisions, and two versions' paired bars.

Signals are resolved long/short decisions with a result; Stage 1 counts take signal != hold as the positive
prediction against label_held (decisions without a label are left out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, func, select

from experiments.records import as_utc
from experiments.schema import eval_bars, eval_decisions

PAIRED_FIELDS = ("signal", "result", "pips", "p_reversal", "label_held")
_COUNTS = ("resolved", "pending", "expired", "void", "signals", "hits", "labelled", "tp", "fp", "fn")


def live_query(version: str, pair: str | None, timeframe: str | None, since: datetime | None) -> Select[Any]:
    """One aggregate row of a version's decisions joined with their bars (bar_time >= since)."""
    d, b = eval_decisions.c, eval_bars.c
    return (
        select(*_live_columns())
        .select_from(eval_decisions.join(eval_bars, d.bar_id == b.id))
        .where(d.version == version, *_bar_filters(pair, timeframe, since))
    )


def live_dict(m: Any) -> dict[str, Any]:
    """Counts and sums as ints and floats, plus the ratios (None when undefined)."""
    out: dict[str, Any] = {k: int(m[k] or 0) for k in _COUNTS}
    out["total_pips"] = float(m["total_pips"] or 0.0)
    out["squared_error"] = float(m["squared_error"] or 0.0)
    out["hit_rate"] = _ratio(out["hits"], out["signals"])
    out["mean_pips"] = out["total_pips"] / out["signals"] if out["signals"] else None
    out["brier"] = out["squared_error"] / out["labelled"] if out["labelled"] else None
    out["stage1_precision"] = _ratio(out["tp"], out["tp"] + out["fp"])
    out["stage1_recall"] = _ratio(out["tp"], out["tp"] + out["fn"])
    return out


def paired_query(
    a: str,
    b: str,
    filters: tuple[str | None, str | None, datetime | None],
    limit: int,
    logged_since: datetime | None,
) -> Select[Any]:
    """Resolved bars on which both versions decided, newest first; filters: (pair, timeframe, since)."""
    da, db = eval_decisions.alias("a"), eval_decisions.alias("b")
    bars = eval_bars.c
    return (
        select(bars.id, bars.pair, bars.timeframe, bars.bar_time, bars.atr, bars.pip,
               *(da.c[f].label(f"a_{f}") for f in PAIRED_FIELDS), *(db.c[f].label(f"b_{f}") for f in PAIRED_FIELDS))
        .select_from(
            eval_bars.join(da, and_(da.c.bar_id == bars.id, da.c.version == a))
            .join(db, and_(db.c.bar_id == bars.id, db.c.version == b))
        )
        .where(bars.state == "resolved", *_bar_filters(*filters))
        .where(*([bars.created_at >= as_utc(logged_since)] if logged_since is not None else []))
        .order_by(bars.bar_time.desc(), bars.pair.desc(), bars.timeframe.desc())
        .limit(limit)
    )  # fmt: skip


def paired_dict(m: Any) -> dict[str, Any]:
    """One paired bar: its key, atr and pip, and each version's decision and outcome as "a" and "b"."""

    def side(prefix: str) -> dict[str, Any]:
        values = {f: m[f"{prefix}_{f}"] for f in PAIRED_FIELDS}
        values["label_held"] = None if values["label_held"] is None else bool(values["label_held"])
        return values

    return {
        "bar_id": int(m["id"]), "pair": m["pair"], "timeframe": m["timeframe"], "bar_time": as_utc(m["bar_time"]),
        "atr": m["atr"], "pip": m["pip"], "a": side("a"), "b": side("b"),
    }  # fmt: skip


def _bar_filters(pair: str | None, timeframe: str | None, since: datetime | None) -> list[Any]:
    b = eval_bars.c
    out: list[Any] = []
    if pair is not None:
        out.append(b.pair == pair)
    if timeframe is not None:
        out.append(b.timeframe == timeframe)
    if since is not None:
        out.append(b.bar_time >= as_utc(since))
    return out


def _live_columns() -> list[Any]:
    """SUM(CASE ...) aggregates of one version's decisions joined with their bars."""
    d, b = eval_decisions.c, eval_bars.c
    resolved = b.state == "resolved"
    signal = and_(resolved, d.signal != "hold", d.result.is_not(None))
    labelled = and_(resolved, d.label_held.is_not(None))
    held, missed = d.label_held.is_(True), d.label_held.is_(False)
    squared_error = case((held, (1.0 - d.p_reversal) * (1.0 - d.p_reversal)), else_=d.p_reversal * d.p_reversal)

    def count(*conditions: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conditions), 1), else_=0)), 0)

    return [
        count(resolved).label("resolved"),
        count(b.state == "pending").label("pending"),
        count(b.state == "expired").label("expired"),
        count(b.note.is_not(None)).label("void"),
        count(signal).label("signals"),
        count(signal, d.result == "hit").label("hits"),
        func.sum(case((signal, d.pips))).label("total_pips"),
        count(labelled).label("labelled"),
        func.sum(case((labelled, squared_error))).label("squared_error"),
        count(labelled, d.signal != "hold", held).label("tp"),
        count(labelled, d.signal != "hold", missed).label("fp"),
        count(labelled, d.signal == "hold", held).label("fn"),
    ]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None
