"""The resolver's pass: covered bars resolved from trusted candles (or set aside with why), stale ones expired."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aifx import metrics, trade
from aifx.serving.context import get_logger
from aifx.serving.log_rows import HORIZON, LOOKBACK
from aifx.serving.resolution import Unresolvable, resolve_bar
from experiments import records
from experiments.errors import Invalid
from experiments.evaluation import EvaluationStore

logger = get_logger("bentoml.aifx.outcomes")
RESOLVE_LIMIT = 2_000


def resolve_pending(store: EvaluationStore, rule: trade.TradeRule, params: Mapping[str, Any], expiry: timedelta) -> int:
    """One pass of the resolver: every covered bar resolved (or set aside with why), the stale expired, the
    backlog gauges set; the number of bars resolved."""
    resolved = 0
    while True:
        pending = store.resolvable(timedelta(hours=1), HORIZON, RESOLVE_LIMIT, before=LOOKBACK)
        if not pending:
            break
        good: list[records.Resolution] = []
        facts: dict[int, tuple[float, float]] = {}
        void: list[tuple[int, str]] = []
        for bar in pending:  # each bar on its own: one that cannot resolve never stops the others
            try:
                rows, fact = resolve_bar(bar, params, rule)
            except (Unresolvable, Invalid, ValueError, ArithmeticError) as exc:
                void.append((bar.id, str(exc)))
                continue
            good.extend(rows)
            facts[bar.id] = (fact.entry, fact.atr)
        resolved += store.write_results(good, facts)
        if void:
            metrics.VOIDED.inc(store.void(void))
            logger.warning("%d bars set aside unresolved, e.g. bar %d: %s", len(void), void[0][0], void[0][1])
        if len(pending) < RESOLVE_LIMIT:
            break
    metrics.RESOLVED.inc(resolved)
    metrics.EXPIRED.inc(store.expire(datetime.now(UTC) - expiry))
    count, oldest = store.pending_backlog()
    metrics.set_backlog(count, (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0)
    return resolved
