"""Request step 7, side effects: what served decisions leave behind (metrics, input-drift rows, the evaluation
log); the A/B record is `ABTests.record`, made by the predictor before it answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aifx import instruments, metrics
from aifx import signal as sig
from aifx.drift import DriftWindows
from aifx.serving.bars import Job
from aifx.serving.errors import ApiError
from aifx.serving.outcome_log import OutcomeLog
from aifx.serving.windows import Prepared


def observe(
    labels: metrics.MetricLabels,
    drift: DriftWindows | None,
    pip_sizes: Mapping[str, float],
    served: Sequence[tuple[Prepared, sig.Decision | ApiError]],
) -> None:
    """Metrics of the served decisions and their rows in the input-drift windows (compares and shadows: none)."""
    keys: dict[tuple[str, str], tuple[str, str] | None] = {}  # a batch's items mostly share a pair and timeframe
    for p, d in served:
        if not isinstance(d, sig.Decision):
            continue
        metrics.observe_prediction(labels, p.version, d.signal, d.stage1_prob, d.confidence)
        if p.in_domain is False:
            metrics.count_out_of_domain(labels, p.version)
        if drift is None:
            continue
        asked = (p.pair, p.timeframe)
        key = keys[asked] if asked in keys else keys.setdefault(asked, drift_key(pip_sizes, p))
        if key is not None:
            drift.add(*key, p.version, p.rows[-1], d.stage1_prob)  # one row copy into its ring buffer


def drift_key(pip_sizes: Mapping[str, float], p: Prepared) -> tuple[str, str] | None:
    """(pair, timeframe) of a served window in canonical spelling; None for a pair not in the instrument
    table or no timeframe, so made-up pairs can neither evict real drift windows nor fill their own."""
    inst = instruments.instrument(p.pair, pip_sizes)
    timeframe = instruments.canonical_timeframe(p.timeframe)
    return None if inst is None or timeframe is None else (inst.name, timeframe)


def log_bar(
    outcomes: OutcomeLog | None, job: Job, decision: sig.Decision, shadows: Sequence[sig.Decision | ApiError]
) -> None:
    """A trusted request's bar in the evaluation log: the served decision and every shadow decision made."""
    if not job.logs or outcomes is None or job.bar is None:  # job.logs first: an anonymous bar stays unfound
        return
    logged = [(job.served.version, decision, 1)]
    for p, d in zip(job.shadows, shadows, strict=True):
        if isinstance(d, sig.Decision):
            logged.append((p.version, d, 0))
        else:
            metrics.count_evaluation_drop("shadow")
    outcomes.log(job.bar, logged)
