"""Per-variant metrics of one experiment from SQL aggregates, plus the B-vs-A statistics."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select

from experiments.schema import SIGNALS, eval_bars, eval_decisions, outcomes, predictions
from experiments.stats import Moments, compare_moments

VARIANTS = ("A", "B")


def _prediction_counts(conn: Connection, experiment_id: str) -> dict[str, dict[str, Any]]:
    """{variant: {"count", "signals", "confidence_sum"}} via GROUP BY variant, signal."""
    stmt = (
        select(predictions.c.variant, predictions.c.signal, func.count(), func.sum(predictions.c.confidence))
        .where(predictions.c.experiment_id == experiment_id)
        .group_by(predictions.c.variant, predictions.c.signal)
    )
    out: dict[str, dict[str, Any]] = {
        v: {"count": 0, "signals": dict.fromkeys(SIGNALS, 0), "confidence_sum": 0.0} for v in VARIANTS
    }
    for variant, signal, count, conf_sum in conn.execute(stmt):
        entry = out[variant]
        entry["count"] += int(count)
        entry["signals"][signal] = int(count)
        entry["confidence_sum"] += float(conf_sum or 0.0)
    return out


def _outcome_aggregates(conn: Connection, experiment_id: str) -> dict[str, dict[str, Any]]:
    """{variant: {"count", "hits", "total_pips", "total_sq"}} via one aggregate query."""
    hit = case((outcomes.c.pips > 0, 1), else_=0)
    stmt = (
        select(
            predictions.c.variant,
            func.count(),
            func.sum(hit),
            func.sum(outcomes.c.pips),
            func.sum(outcomes.c.pips * outcomes.c.pips),
        )
        .select_from(outcomes.join(predictions, outcomes.c.prediction_id == predictions.c.prediction_id))
        .where(predictions.c.experiment_id == experiment_id)
        .group_by(predictions.c.variant)
    )
    out = {v: {"count": 0, "hits": 0, "total_pips": 0.0, "total_sq": 0.0} for v in VARIANTS}
    for variant, count, hits, total, total_sq in conn.execute(stmt):
        out[variant] = {
            "count": int(count),
            "hits": int(hits or 0),
            "total_pips": float(total or 0.0),
            "total_sq": float(total_sq or 0.0),
        }
    return out


def _market_aggregates(conn: Connection, experiment_id: str) -> dict[str, dict[str, Any]]:
    """{variant: {"count", "hits", "total_pips", "total_sq"}} of long/short predictions whose bar is resolved.

    The outcome of a prediction is its version's trade on its bar (experiments.evaluation); a hit is a
    take profit reached, as in the live figures.
    """
    p, b, d = predictions.c, eval_bars.c, eval_decisions.c
    hit = case((d.result == "hit", 1), else_=0)
    stmt = (
        select(p.variant, func.count(), func.sum(hit), func.sum(d.pips), func.sum(d.pips * d.pips))
        .select_from(
            predictions.join(
                eval_bars, (b.pair == p.pair) & (b.timeframe == p.timeframe) & (b.bar_time == p.bar_time)
            ).join(eval_decisions, (d.bar_id == b.id) & (d.version == p.model_version))
        )
        .where(p.experiment_id == experiment_id, b.state == "resolved", d.result.is_not(None))
        .group_by(p.variant)
    )
    out = {v: {"count": 0, "hits": 0, "total_pips": 0.0, "total_sq": 0.0} for v in VARIANTS}
    for variant, count, hits, total, total_sq in conn.execute(stmt):
        out[variant] = {"count": int(count), "hits": int(hits or 0), "total_pips": float(total or 0.0),
                        "total_sq": float(total_sq or 0.0)}  # fmt: skip
    return out


def user_counts(conn: Connection, experiment_id: str) -> dict[str, int]:
    """{variant: distinct users with a recorded prediction} (the sample-ratio-mismatch check's counts)."""
    p = predictions.c
    stmt = (
        select(p.variant, func.count(func.distinct(p.user_id)))
        .where(p.experiment_id == experiment_id)
        .group_by(p.variant)
    )
    out = dict.fromkeys(VARIANTS, 0)
    out.update({variant: int(n) for variant, n in conn.execute(stmt)})
    return out


def _outcome_block(outs: dict[str, Any]) -> dict[str, Any]:
    n = outs["count"]
    return {
        "count": n,
        "hit_rate": outs["hits"] / n if n else None,
        "mean_pips": outs["total_pips"] / n if n else None,
        "total_pips": outs["total_pips"],
    }


def _variant_metrics(preds: dict[str, Any], outs: dict[str, Any], market: dict[str, Any]) -> dict[str, Any]:
    """The seed's metrics block plus client-posted outcomes and market outcomes (kept apart)."""
    count = preds["count"]
    return {
        "count": count,
        "signals": preds["signals"],
        "avg_confidence": preds["confidence_sum"] / count if count else None,
        "outcomes": _outcome_block(outs),  # the seed's block: pips clients posted
        "market_outcomes": {**_outcome_block(market), "source": "market"},
    }


def experiment_metrics(conn: Connection, exp: dict[str, Any], min_samples: int, alpha: float) -> dict[str, Any]:
    """The seed's metrics shape for one experiment, with `comparison` from stats.compare."""
    eid = exp["experiment_id"]
    preds, outs, market = _prediction_counts(conn, eid), _outcome_aggregates(conn, eid), _market_aggregates(conn, eid)
    shares = {"A": 1.0 - exp["traffic_split"], "B": exp["traffic_split"]}
    versions = {"A": exp["variant_a"], "B": exp["variant_b"]}
    variants = {
        v: {
            "model_version": versions[v],
            "traffic_split": shares[v],
            "metrics": _variant_metrics(preds[v], outs[v], market[v]),
        }
        for v in VARIANTS
    }
    return {
        "experiment_id": eid,
        "name": exp["name"],
        "description": exp["description"],
        "status": exp["status"],
        "active": exp["active"],
        "variants": variants,
        "comparison": compare_moments(*_moments(outs["A"]), *_moments(outs["B"]), min_samples=min_samples, alpha=alpha),
        "market_comparison": compare_moments(
            *_moments(market["A"]), *_moments(market["B"]), min_samples=min_samples, alpha=alpha
        ),
    }


def _moments(agg: dict[str, Any]) -> tuple[Moments, int]:
    return Moments(agg["count"], agg["total_pips"], agg["total_sq"]), agg["hits"]
