"""The promoter's anchored comparisons (issue 26): start, advance with the newly resolved paired rows, reset, show.

The arithmetic is aifx.anchored's; this adds the database (experiments.anchors, outside retention) and
the evaluation log. Every call blocks: run it in a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from aifx import anchored
from aifx.settings import Settings
from experiments.anchors import AnchorStore
from experiments.evaluation import EvaluationStore
from experiments.promotion import PromotionStore

SCOPE = anchored.SCOPE_ALL


class Anchoring:
    """One anchored sequence per (incumbent, challenger) over every series, as the promoter runs it."""

    def __init__(
        self, settings: Settings, evaluation: EvaluationStore, store: AnchorStore, policies: PromotionStore
    ) -> None:
        self.settings = settings
        self.evaluation = evaluation
        self.store = store
        self.policies = policies

    def armed(self) -> int:
        """How many challengers have a policy that is not off: k, the alpha split's denominator."""
        return sum(p["mode"] != "off" for p in self.policies.policies())

    def start(self, a: str, b: str, min_effect: float, armed: int | None = None) -> anchored.Anchored:
        """A new anchor from now: alpha / k for k armed challengers, spent as b's j-th anchor."""
        state, write = self.prepare(a, b, min_effect, armed)
        write(None)
        return state

    def prepare(
        self, a: str, b: str, min_effect: float, armed: int | None = None
    ) -> tuple[anchored.Anchored, Callable[[Connection | None], Any]]:
        """A new anchor from now (reads only) and what stores it: in a given write transaction, or its own."""
        j = self.store.next_index(b)
        k = self.armed() if armed is None else armed
        alpha = anchored.anchor_alpha(self.settings.comparison_alpha, max(k, 1), j)
        now = datetime.now(UTC)
        state = anchored.start(now, alpha, min_effect)
        return state, functools.partial(self.store.start, a, b, SCOPE, alpha, anchored.to_json(state), j, now)

    def load(self, a: str, b: str) -> anchored.Anchored | None:
        """The stored state, with the stored decision (it stands even if another replica's save lagged)."""
        row = self.store.get(a, b, SCOPE)
        if row is None:
            return None
        state = anchored.from_json(row["state"])
        if row["decision"] is not None:
            state.decision = row["decision"]
        return state

    def advance(self, a: str, b: str, min_effect: float, armed: int | None = None) -> anchored.Anchored:
        """Feed the paired rows logged since the anchor started and newer than each series' last bar; save."""
        state = self.load(a, b)
        if state is None:
            state = self.start(a, b, min_effect, armed)
        lasts = [datetime.fromisoformat(t.last) for t in state.series.values() if t.last]
        since = min(lasts) if lasts else None  # older rows are already in the sums (or late: skipped)
        rows = self.evaluation.paired(a, b, since=since, logged_since=datetime.fromisoformat(state.started_at))
        new = anchored.advance(state, rows)
        self.store.save(a, b, SCOPE, anchored.to_json(new), new.decision)
        return new

    def view(self, a: str, b: str) -> dict[str, Any] | None:
        """GET /reversal/evaluation's `anchored`: the stored anchor's figures, or None without one."""
        row = self.store.get(a, b, SCOPE)
        if row is None:
            return None
        out = anchored.summary(anchored.from_json(row["state"]))
        return out | {"decision": row["decision"], "decided_at": row["decided_at"], "index": row["decisions_spent"]}
