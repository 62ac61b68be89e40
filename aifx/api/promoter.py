"""Paired comparisons of versions on the evaluation log, and the opt-in promotion policy that acts on them.

One worker per replica runs `run()`; a database lock (experiments.promotion) lets one of them act per
pass. Guardrails: the version's drawdown in R, its stage error rate in this worker (input drift is an alert
only: anonymous requests fill its windows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aifx import metrics, paired, promotion
from aifx.api.outcome_log import HORIZON
from aifx.api.registry import VersionRegistry
from aifx.settings import Settings
from experiments.evaluation import EvaluationStore
from experiments.promotion import PromotionStore

logger = logging.getLogger("bentoml.aifx.promotion")
AUDIT_FIGURES = ("n_bars", "mean_r_a", "mean_r_b", "mean_diff", "nw_se", "confidence_sequence", "max_drawdown_r")
Drift = Callable[[str], float | None]


class Promoter:
    """Compares versions on the bars both scored and applies each challenger's promotion policy."""

    def __init__(
        self,
        settings: Settings,
        evaluation: EvaluationStore,
        policies: PromotionStore,
        registry: VersionRegistry,
        health: promotion.Tally,
        drift: Drift | None = None,
    ) -> None:
        self.settings = settings
        self.evaluation = evaluation
        self.policies = policies
        self.registry = registry
        self.health = health
        self.drift = drift or (lambda _version: None)
        self.errors: dict[str, float | None] = {}

    # -- comparisons ---------------------------------------------------------------------------

    def window_start(self) -> datetime:
        """The oldest logging time a comparison reads by default: the retention period (90 days when unlimited)."""
        days = self.settings.retention_days or 90
        return datetime.now(UTC) - timedelta(days=days)

    def compare(
        self,
        a: str,
        b: str,
        pair: str | None = None,
        timeframe: str | None = None,
        since: datetime | None = None,
        limits: promotion.Limits | None = None,
        logged_since: datetime | None = None,
        worker_guardrails: bool = False,
    ) -> dict[str, Any]:
        """The paired comparison of b against a (blocking: call in a thread), with b's guardrails applied.

        Bars logged within the retention period (or since logged_since), at or after bar time `since`.
        The drawdown guardrail comes from those bars, so every worker answers alike; the stage error
        rate and input drift are this worker's own and count only where worker_guardrails (the promoter).
        """
        limits = limits or self.default_limits()
        given, logged_since = logged_since, logged_since or self.window_start()
        rows = self.evaluation.paired(a, b, pair, timeframe, since, logged_since=logged_since)
        # Rows of several pairs or timeframes interleave in bar-time order: a trade then correlates with
        # the next HORIZON rows of each series, so blocks (and the Newey-West lag) grow with their number.
        series = len({(r["pair"], r["timeframe"]) for r in rows}) or 1
        out = paired.compare(rows, HORIZON * series, self.settings.comparison_alpha, limits.min_effect,
                             expected_bars=paired.EXPECTED_BARS * series)  # fmt: skip
        drawdown = out["max_drawdown_r"]["b"]
        watch = self.watch(b, drawdown) if worker_guardrails else promotion.Watch(drawdown)
        broken = promotion.breaches(watch, limits)
        filters = {"pair": pair, "timeframe": timeframe, "since": since.isoformat() if since else None,
                   "logged_since": given.isoformat() if given else None,
                   "window_days": self.settings.retention_days or 90}  # fmt: skip
        return {
            "a": a,
            "b": b,
            "filters": filters,
            "series": series,
            **out,
            "state": promotion.with_guardrails(out["state"], broken),
            "guardrails": broken,
        }

    def default_limits(self) -> promotion.Limits:
        """Guardrail limits without a policy: the settings' drawdown, error rate and drift limits."""
        s = self.settings
        return promotion.Limits(s.comparison_min_effect_r, s.guardrail_max_drawdown_r, s.guardrail_max_error_rate,
                                s.guardrail_max_psi)  # fmt: skip

    def watch(self, version: str, drawdown: float | None) -> promotion.Watch:
        """What the guardrails look at for a version now."""
        return promotion.Watch(drawdown, self.errors.get(version), self.drift(version))

    # -- the policy loop -----------------------------------------------------------------------

    async def run(self, also: Callable[[], None] | None = None) -> None:
        """Compare the active version with every other loaded one and apply the policies, forever.

        also: more blocking monitoring for the same pass (the experiment's sample-ratio check).
        """
        while True:
            try:
                await self.step()
                if also is not None:
                    await asyncio.to_thread(also)
            except Exception as exc:  # noqa: BLE001 - the database may be down: try again next time
                logger.warning("promotion pass failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self.settings.promotion_every_seconds)

    async def step(self) -> None:
        """One pass: comparison gauges, then each policy's decision."""
        self.errors = self.health.take()
        avail = await self.registry.availability()
        active = await self.registry.active_version()
        if active is None:
            return
        challengers = [v for v in avail.loaded if v != active]
        comparisons = {}
        for b in challengers:
            comparisons[b] = await asyncio.to_thread(self.compare, active, b, worker_guardrails=True)
        metrics.set_comparison_states({(active, b): c["state"] for b, c in comparisons.items()})
        for policy in await asyncio.to_thread(self.policies.policies):
            await self._apply(policy, active, set(avail.loaded), comparisons)

    async def _apply(
        self, policy: Mapping[str, Any], active: str, loaded: set[str], comparisons: Mapping[str, Mapping[str, Any]]
    ) -> None:
        challenger = policy["challenger"]
        if policy.get("probation_from_version"):
            await self._probation(policy, active)
            return
        if challenger not in comparisons or policy["mode"] == "off":
            return
        limits = _limits(policy, self.settings)
        comparison = await asyncio.to_thread(self.compare, active, challenger, limits=limits, worker_guardrails=True)
        last = await asyncio.to_thread(self._last_action, challenger)
        step = promotion.decide(policy["mode"], comparison["state"], active, challenger, comparison["guardrails"], last)
        if step.action == "recommend":
            await asyncio.to_thread(self._audit, "recommend", policy, active, comparison, step.reason)
        elif step.action == "switch":
            await self._switch(policy, active, challenger, comparison, step.reason)

    def _last_action(self, challenger: str) -> str | None:
        rows = self.policies.decisions(limit=1, challenger=challenger)
        return rows[0]["action"] if rows else None

    async def _switch(
        self, policy: Mapping[str, Any], active: str, challenger: str, comparison: Mapping[str, Any], reason: str
    ) -> None:
        """Auto mode: switch through the persisted switch, one worker across replicas, then start probation."""
        with self.policies.try_act("promotion") as acting:
            now = self.policies.get_policy(challenger)  # another replica may have acted since our read
            if not acting or now is None or now["mode"] != "auto" or now["probation_from_version"]:
                return
            if await self.registry.active_version() != active:
                return
            await self.registry.switch(challenger)
            self.policies.start_probation(challenger, active, datetime.now(UTC))
            self._audit("switch", policy, active, comparison, reason)
        logger.warning("promotion: active version switched %s -> %s: %s", active, challenger, reason)

    async def _probation(self, policy: Mapping[str, Any], active: str) -> None:
        """Watch the promoted version against the one it replaced; roll back on a breach, confirm at the end."""
        challenger, previous = policy["challenger"], policy["probation_from_version"]
        started = datetime.fromisoformat(policy["probation_started_at"])
        comparison = await asyncio.to_thread(self.compare, previous, challenger, limits=_limits(policy, self.settings),
                                             logged_since=started, worker_guardrails=True)  # fmt: skip
        step = promotion.decide_probation(comparison["guardrails"], comparison["n_bars"], policy["probation_bars"])
        if step.action is None:
            return
        with self.policies.try_act("promotion") as acting:
            if not acting:
                return
            if step.action == "rollback" and active == challenger:
                await self.registry.switch(previous)
            self.policies.end_probation(challenger)
            if step.action == "rollback":  # no automatic second try: an admin arms the policy again
                self.policies.set_policy(challenger, "recommend", float(policy["min_effect_r"]),
                                         float(policy["max_drawdown_r"]), int(policy["probation_bars"]))  # fmt: skip
            self._audit(step.action, policy, previous, comparison, step.reason)
        logger.warning("promotion: %s of %s: %s", step.action, challenger, step.reason)

    def _audit(self, action: str, policy: Mapping[str, Any], incumbent: str, comparison: Mapping[str, Any],
               reason: str) -> None:  # fmt: skip
        self.policies.record_decision(action, policy["challenger"], incumbent, policy["mode"], comparison["state"],
                                      reason, promotion.figures(comparison, AUDIT_FIGURES))  # fmt: skip


def _limits(policy: Mapping[str, Any], settings: Settings) -> promotion.Limits:
    """A policy's guardrail limits: its own drawdown and minimum effect, the settings' error rate and drift."""
    return promotion.Limits(float(policy["min_effect_r"]), float(policy["max_drawdown_r"]),
                            settings.guardrail_max_error_rate, settings.guardrail_max_psi)  # fmt: skip
