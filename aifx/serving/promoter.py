"""Paired comparisons of versions on the evaluation log, and the opt-in promotion policy that acts on them.

One worker per replica runs `run()`; a database lock (experiments.promotion) lets one of them act per
pass. Decisions come from the anchored sequence of each (incumbent, challenger) (aifx.anchored, issue 26):
started when the policy is armed, at a switch or at an admin reset, advanced every pass, its decision
standing. The windowed comparison (`compare`) is for display and the gauges only. Guardrails are relative
to the incumbent on the same bars, each with a minimum count (aifx.promotion); input drift is an alert only.

Every database call runs in a thread (the promoter shares worker 1's event loop with requests), and an
action's writes are one transaction (PromotionStore.promote, .finish_probation): the active version, the
probation, the anchor and the audit row are all written or none is; this worker's in-memory active version
follows once the transaction committed (VersionRegistry.adopt), the others' within the state TTL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aifx import anchored, metrics, paired, promotion
from aifx.serving.anchoring import Anchoring
from aifx.serving.log_rows import HORIZON
from aifx.serving.registry import VersionRegistry
from aifx.settings import Settings
from experiments.anchors import AnchorStore
from experiments.errors import Conflict, NotFound
from experiments.evaluation import EvaluationStore
from experiments.promotion import PromotionStore

logger = logging.getLogger("bentoml.aifx.promotion")
AUDIT_FIGURES = ("n_bars", "mean_r_a", "mean_r_b", "mean_diff", "nw_se", "confidence_sequence", "max_drawdown_r")


class Promoter:
    """Compares versions on the bars both scored and applies each challenger's promotion policy."""

    def __init__(
        self,
        settings: Settings,
        evaluation: EvaluationStore,
        policies: PromotionStore,
        registry: VersionRegistry,
        health: promotion.Tally,
        anchors: AnchorStore | None = None,
    ) -> None:
        self.settings = settings
        self.evaluation = evaluation
        self.policies = policies
        self.registry = registry
        self.health = health
        self.anchoring = Anchoring(settings, evaluation, anchors or AnchorStore(policies._store), policies)
        self.calls: dict[str, tuple[int, int]] = {}  # (errors, calls) per version in this worker since its anchor

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
        The drawdown guardrail (b's beyond a's) comes from those bars, so every worker answers alike; the
        stage error rate is this worker's own and counts only where worker_guardrails (the promoter).
        """
        limits = limits or self.default_limits()
        given, logged_since = logged_since, logged_since or self.window_start()
        rows = self.evaluation.paired(a, b, pair, timeframe, since, logged_since=logged_since)
        # Rows of several pairs or timeframes interleave in bar-time order: a trade then correlates with
        # the next HORIZON rows of each series, so blocks (and the Newey-West lag) grow with their number.
        series = len({(r["pair"], r["timeframe"]) for r in rows}) or 1
        out = paired.compare(rows, HORIZON * series, self.settings.comparison_alpha, limits.min_effect,
                             expected_bars=paired.EXPECTED_BARS * series)  # fmt: skip
        dd = out["max_drawdown_r"]
        errors, calls = self.calls.get(b, (0, 0)) if worker_guardrails else (0, 0)
        broken = promotion.breaches(promotion.Watch(dd["a"], dd["b"], out["n_bars"], errors, calls), limits)
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
            "view": "windowed",
        }

    def default_limits(self) -> promotion.Limits:
        """Guardrail limits without a policy: the settings' minimum effect, drawdown margin and error rate."""
        s = self.settings
        return promotion.Limits(s.comparison_min_effect_r, s.guardrail_max_drawdown_r, s.guardrail_max_error_rate)

    def watch(self, version: str, state: anchored.Anchored) -> promotion.Watch:
        """What the guardrails compare: both drawdowns on the anchor's bars, the version's calls in this worker."""
        errors, calls = self.calls.get(version, (0, 0))
        return promotion.Watch(state.dd_a, state.dd_b, state.bars, errors, calls)

    def _start(self, a: str, b: str, min_effect: float) -> anchored.Anchored:
        """A new anchor of b against a; b's stage calls count again from here (blocking)."""
        self.calls.pop(b, None)
        return self.anchoring.start(a, b, min_effect)

    async def reset(self, challenger: str) -> dict[str, Any]:
        """Admin reset: the challenger's anchor against its incumbent starts anew; returns the anchor's figures."""
        policy = await asyncio.to_thread(self.policies.get_policy, challenger)
        if policy is None:
            raise NotFound(f"challenger {challenger!r} has no promotion policy")
        incumbent = policy["probation_from_version"] or await self.registry.active_version()
        if incumbent is None or incumbent == challenger:
            raise Conflict(f"{challenger!r} is the active version: there is nothing to compare it with")
        await asyncio.to_thread(self._start, incumbent, challenger, float(policy["min_effect_r"]))
        return {"a": incumbent, "b": challenger, "anchored": await asyncio.to_thread(self.anchoring.view,
                                                                                   incumbent, challenger)}  # fmt: skip

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
        """One pass: windowed comparison gauges, then each policy's anchored decision."""
        for version, (errors, calls) in self.health.take_counts().items():
            old = self.calls.get(version, (0, 0))
            self.calls[version] = (old[0] + errors, old[1] + calls)
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
            await self._apply(policy, active, comparisons)

    async def _apply(
        self, policy: Mapping[str, Any], active: str, comparisons: Mapping[str, Mapping[str, Any]]
    ) -> None:
        challenger = policy["challenger"]
        if policy.get("probation_from_version"):
            await self._probation(policy, active)
            return
        if challenger not in comparisons or policy["mode"] == "off":
            return
        limits = _limits(policy, self.settings)
        state = await asyncio.to_thread(self._advance, active, challenger, limits.min_effect)
        broken = promotion.breaches(self.watch(challenger, state), limits)
        last = await asyncio.to_thread(_last_action, self.policies, challenger)
        verdict = state.decision or paired.COLLECTING
        step = promotion.decide(policy["mode"], verdict, active, challenger, broken, last)
        figures = _figures(comparisons[challenger], state)
        if step.action == "recommend":
            await asyncio.to_thread(_audit, self.policies, "recommend", policy, active, verdict, figures, step.reason)
        elif step.action == "switch":
            await self._switch(policy, active, challenger, figures, step.reason)

    def _advance(self, a: str, b: str, min_effect: float) -> anchored.Anchored:
        """The anchor of b against a after this pass's rows; started (and b's calls reset) if it has none."""
        if self.anchoring.load(a, b) is None:
            self._start(a, b, min_effect)
        return self.anchoring.advance(a, b, min_effect)

    async def _switch(
        self, policy: Mapping[str, Any], active: str, challenger: str, figures: Mapping[str, Any], reason: str
    ) -> None:
        """Auto mode, one worker across replicas: switch, probation, its anchor and the audit row in one transaction."""
        async with self.policies.acting("promotion") as acting:
            now = await asyncio.to_thread(self.policies.get_policy, challenger) if acting else None
            changed = now is None or now["mode"] != "auto" or now["probation_from_version"]
            if changed or await self.registry.active_version() != active:
                return  # another replica acted, or an admin changed the policy or switched since this pass read them
            await _serving(self.registry, challenger)
            min_effect = float(policy["min_effect_r"])  # probation tests from a new anchor, written with the switch
            _, anchor = await asyncio.to_thread(self.anchoring.prepare, active, challenger, min_effect)
            await asyncio.to_thread(self.policies.promote, challenger, active, datetime.now(UTC), mode="auto",
                                    state=paired.B_BETTER, reason=reason, figures=figures, also=anchor)  # fmt: skip
            self.calls.pop(challenger, None)  # committed: the challenger's stage calls count from its anchor
            self.registry.adopt(challenger, active)  # this worker serves it at once, the others within the TTL
        logger.warning("promotion: active version switched %s -> %s: %s", active, challenger, reason)

    async def _probation(self, policy: Mapping[str, Any], active: str) -> None:
        """The promoted version against the one it replaced, anchored at the switch: roll back or confirm."""
        challenger, previous = policy["challenger"], policy["probation_from_version"]
        limits = _limits(policy, self.settings)
        state = await asyncio.to_thread(self._advance, previous, challenger, limits.min_effect)
        broken = promotion.breaches(self.watch(challenger, state), limits)
        step = promotion.decide_probation(broken, state.bars, policy["probation_bars"], state.decision)
        if step.action is None:
            return
        started = datetime.fromisoformat(policy["probation_started_at"])
        window = await asyncio.to_thread(self.compare, previous, challenger, limits=limits, logged_since=started,
                                         worker_guardrails=True)  # fmt: skip
        verdict = promotion.with_guardrails(state.decision or paired.COLLECTING, broken)
        back = step.action == "rollback" and active == challenger
        async with self.policies.acting("promotion") as acting:
            if not acting:
                return
            if back:
                await _serving(self.registry, previous)
            await asyncio.to_thread(self.policies.finish_probation, step.action, challenger, previous,
                                    switch_back=back, mode=policy["mode"], state=verdict, reason=step.reason,
                                    figures=_figures(window, state))  # fmt: skip
            if back:
                self.registry.adopt(previous, challenger)
        logger.warning("promotion: %s of %s: %s", step.action, challenger, step.reason)


async def _serving(registry: VersionRegistry, version: str) -> None:
    """The registry's 503 unless the version serves, its stages asked afresh (the pass fails, nothing written)."""
    await registry.require_loaded(version, avail=await registry.availability(refresh=True))


def _last_action(store: PromotionStore, challenger: str) -> str | None:
    """The action of the challenger's newest audit row."""
    rows = store.decisions(limit=1, challenger=challenger)
    return rows[0]["action"] if rows else None


def _audit(store: PromotionStore, action: str, policy: Mapping[str, Any], incumbent: str, state: str,
           figures: Mapping[str, Any], reason: str) -> None:  # fmt: skip
    """Append an audit row."""
    store.record_decision(action, policy["challenger"], incumbent, policy["mode"], state, reason, figures)


def _figures(window: Mapping[str, Any], state: anchored.Anchored) -> dict[str, Any]:
    """An audit row's figures: the anchored sequence that decided, and the windowed view beside it."""
    return {**promotion.figures(window, AUDIT_FIGURES), "anchored": anchored.summary(state)}


def _limits(policy: Mapping[str, Any], settings: Settings) -> promotion.Limits:
    """A policy's limits: its own minimum effect and drawdown margin, the settings' error rate."""
    return promotion.Limits(float(policy["min_effect_r"]), float(policy["max_drawdown_r"]),
                            settings.guardrail_max_error_rate)  # fmt: skip
