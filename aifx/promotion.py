"""Promotion policy rules (issue 13): guardrails and what to do about a challenger, as plain functions.

The promoter (aifx/serving/promoter.py) reads the figures and acts; everything here is a decision on
numbers, so plain asserts test it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aifx.paired import A_BETTER, B_BETTER, STATES

MODES = ("off", "recommend", "auto")
Action = Literal["recommend", "switch", "rollback", "confirm"]


MIN_DRAWDOWN_BARS = 240  # paired bars before the drawdown guardrail may fire: 10 blocks, 20 trade horizons
MIN_CALLS = 200  # stage calls before the error-rate guardrail may fire
WILSON_Z = 3.0  # one-sided 99.87 %: the bound is re-read every pass, so it leaves room for many looks


@dataclass(frozen=True)
class Limits:
    """The minimum effect and guardrail limits: drawdown margin from the policy, error rate from the settings."""

    min_effect: float
    max_drawdown_r: float
    max_error_rate: float = 0.05


@dataclass(frozen=True)
class Watch:
    """What the guardrails compare on the same paired bars: both drawdowns, and b's stage calls and errors."""

    drawdown_a: float | None = None
    drawdown_b: float | None = None
    bars: int = 0
    errors: int = 0
    calls: int = 0


def wilson_lower(errors: int, calls: int, z: float = WILSON_Z) -> float:
    """Wilson score lower bound of an error rate (0.0 without calls)."""
    if calls <= 0:
        return 0.0
    p = errors / calls
    centre = p + z * z / (2 * calls)
    spread = z * math.sqrt(p * (1 - p) / calls + z * z / (4 * calls * calls))
    return max(0.0, (centre - spread) / (1 + z * z / calls))


def breaches(watch: Watch, limits: Limits) -> list[str]:
    """The guardrails b breaks relative to a on the same bars, each as a readable reason (empty when none)."""
    out = []
    da, db = watch.drawdown_a, watch.drawdown_b
    if da is not None and db is not None and watch.bars >= MIN_DRAWDOWN_BARS and db - da > limits.max_drawdown_r:
        out.append(f"drawdown {db:.3f} R exceeds the incumbent's {da:.3f} R by more than max_drawdown_r "
                   f"{limits.max_drawdown_r:g} over {watch.bars} paired bars")  # fmt: skip
    low = wilson_lower(watch.errors, watch.calls)
    if watch.calls >= MIN_CALLS and low > limits.max_error_rate:
        out.append(f"stage error rate {watch.errors}/{watch.calls} (Wilson lower bound {low:.3f}) above "
                   f"{limits.max_error_rate:g}")  # fmt: skip
    return out


def with_guardrails(state: str, broken: Sequence[str]) -> str:
    """A comparison's state, overridden by `guardrail_breach` when the challenger breaks a guardrail."""
    return "guardrail_breach" if broken else state


@dataclass(frozen=True)
class Step:
    """One decision: the action (None: nothing to do) and why."""

    action: Action | None
    reason: str


def decide(mode: str, state: str, active: str, challenger: str, broken: Sequence[str], last: str | None) -> Step:
    """What the policy does about a challenger that is not on probation.

    `last` is the action of the newest audit row for this challenger, so a standing recommendation is
    not written again on every pass.
    """
    if mode == "off" or challenger == active:
        return Step(None, "policy off" if mode == "off" else "challenger is already active")
    if broken:
        return Step(None, "guardrail: " + "; ".join(broken))
    if state != B_BETTER:  # b_better_below_min_effect and no_meaningful_difference never act
        return Step(None, f"comparison state {state}")
    why = f"{challenger} better than {active} by more than the minimum effect (always-valid interval above it)"
    if mode == "recommend":
        if last == "recommend":
            return Step(None, "recommendation already recorded")
        return Step("recommend", why)
    return Step("switch", f"{why}, no guardrail broken")


def decide_probation(broken: Sequence[str], bars_seen: int, probation_bars: int, decision: str | None = None) -> Step:
    """During probation: roll back on the anchored a_better or a breach, confirm after probation_bars, else wait."""
    if decision == A_BETTER:
        return Step("rollback", "the version it replaced is better (anchored interval below 0 since the switch)")
    if broken:
        return Step("rollback", "guardrail during probation: " + "; ".join(broken))
    if bars_seen >= probation_bars:
        return Step("confirm", f"probation passed: {bars_seen} paired bars without a_better or a guardrail breach")
    return Step(None, f"probation: {bars_seen} of {probation_bars} bars")


def state_gauge(pairs: Mapping[tuple[str, str], str]) -> dict[tuple[str, str, str], float]:
    """1 for each (a, b)'s current state and 0 for its other states (a closed label set)."""
    return {(a, b, s): float(s == state) for (a, b), state in pairs.items() for s in STATES}


def figures(comparison: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The numbers of a comparison an audit row keeps."""
    return {k: comparison.get(k) for k in keys}


class Tally:
    """Windows each version scored and failed (stage call failed or output not a probability) since the last take."""

    def __init__(self) -> None:
        self._counts: dict[str, list[int]] = {}

    def record(self, version: str, ok: bool) -> None:
        """Count one scored window of a version."""
        counts = self._counts.get(version)
        if counts is None:
            counts = self._counts[version] = [0, 0]
        counts[0 if ok else 1] += 1

    def take(self) -> dict[str, float | None]:
        """Each version's error rate since the last call (None without windows), then start again."""
        return {v: (bad / n if n else None) for v, (bad, n) in self.take_counts().items()}

    def take_counts(self) -> dict[str, tuple[int, int]]:
        """Each version's (errors, windows) since the last take, then start again."""
        counts, self._counts = self._counts, {}
        return {v: (bad, good + bad) for v, (good, bad) in counts.items()}
