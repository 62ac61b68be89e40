"""Request step 8, answers: the seed's prediction, comparison, legacy and batch-item objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aifx import signal as sig
from aifx.serving.bars import Job
from aifx.serving.errors import now_iso
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.schemas import CompareRequest
from aifx.serving.windows import Prepared


def prediction_data(
    pair: str, timeframe: str, version: str, d: sig.Decision, in_domain: bool | None = None, stamp: str | None = None
) -> dict[str, Any]:
    """The seed's prediction object; `factors.in_domain`: was the version trained on its pair and timeframe;
    stamp: the answer's time (now_iso() when None)."""
    return {
        "pair": pair,
        "timeframe": timeframe,
        "signal": d.signal,
        "confidence": d.confidence,
        "stage1_prob": d.stage1_prob,
        "stage2_prob": d.stage2_prob,
        "model_version": version,
        "factors": sig.factors(d) | {"in_domain": in_domain},
        "timestamp": stamp or now_iso(),
    }


def prediction(
    pair: str, timeframe: str, job: Job, decision: sig.Decision, outcomes: OutcomeLog | None, stamp: str | None = None
) -> dict:
    """prediction_data with `trade` levels (entry, take profit, stop) for a long or short on a known bar."""
    data = prediction_data(pair, timeframe, job.served.version, decision, job.served.in_domain, stamp)
    if decision.signal == sig.HOLD or outcomes is None or job.bar is None:  # a hold has no levels: no bar needed
        return data
    levels = outcomes.trade(job.bar, decision.signal)
    return data | {"trade": levels} if levels is not None else data


def comparison(req: CompareRequest, batch: Sequence[Prepared], decisions: Sequence[sig.Decision]) -> dict[str, Any]:
    """The same input through several versions, with consensus and disagreement."""
    predictions = {
        p.version: {
            "signal": d.signal,
            "confidence": d.confidence,
            "stage1_prob": d.stage1_prob,
            "stage2_prob": d.stage2_prob,
            "model_version": p.version,
            "in_domain": p.in_domain,
        }
        for p, d in zip(batch, decisions, strict=True)
    }
    consensus, disagreement = sig.consensus(d.signal for d in decisions)
    return {
        "pair": req.pair,
        "timeframe": req.timeframe,
        "predictions": predictions,
        "consensus": consensus,
        "disagreement": disagreement,
        "timestamp": now_iso(),
    }


def legacy(prepared: Prepared, d: sig.Decision) -> dict[str, Any]:
    """The old engine's {prediction, confidence, factors}."""
    factors = {
        **sig.factors(d),
        "in_domain": prepared.in_domain,
        "stage1_prob": d.stage1_prob,
        "stage2_prob": d.stage2_prob,
        "model_version": prepared.version,
    }
    return {"prediction": d.signal, "confidence": d.confidence, "factors": factors}


def failed_item(i: int, message: str) -> dict[str, Any]:
    """A batch item that failed on its own."""
    return {"success": False, "data": None, "error": f"items[{i}]: {message}"}


def succeeded_item(data: dict[str, Any]) -> dict[str, Any]:
    """A batch item's prediction."""
    return {"success": True, "data": data, "error": None}
