"""Promotion policy rules (issue 13): guardrails and what to do about a challenger, as plain functions.

The promoter (aifx/api/promoter.py) reads the figures and acts; everything here is a decision on
numbers, so plain asserts test it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aifx.paired import B_BETTER, STATES

MODES = ("off", "recommend", "auto")
Action = Literal["recommend", "switch", "rollback", "confirm"]


@dataclass(frozen=True)
class Limits:
    """The minimum effect and guardrail limits: drawdown from the policy, error rate and drift from the settings."""

    min_effect: float
    max_drawdown_r: float
    max_error_rate: float = 0.05
    max_psi: float = 0.25


@dataclass(frozen=True)
class Watch:
    """What the guardrails look at for one version: its drawdown in R, stage error rate and worst PSI."""

    drawdown_r: float | None = None
    error_rate: float | None = None
    psi: float | None = None


def breaches(watch: Watch, limits: Limits) -> list[str]:
    """The guardrails a version breaks, each as a readable reason (empty when none)."""
    out = []
    if watch.drawdown_r is not None and watch.drawdown_r > limits.max_drawdown_r:
        out.append(f"drawdown {watch.drawdown_r:.3f} R above max_drawdown_r {limits.max_drawdown_r:g}")
    if watch.error_rate is not None and watch.error_rate > limits.max_error_rate:
        out.append(f"stage error rate {watch.error_rate:.3f} above {limits.max_error_rate:g}")
    if watch.psi is not None and watch.psi > limits.max_psi:
        out.append(f"input drift PSI {watch.psi:.3f} above {limits.max_psi:g}")
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


def decide_probation(broken: Sequence[str], bars_seen: int, probation_bars: int) -> Step:
    """During probation: roll back on a breach, confirm after probation_bars resolved bars, else wait."""
    if broken:
        return Step("rollback", "guardrail during probation: " + "; ".join(broken))
    if bars_seen >= probation_bars:
        return Step("confirm", f"probation passed: {bars_seen} resolved bars without a guardrail breach")
    return Step(None, f"probation: {bars_seen} of {probation_bars} bars")


def state_gauge(pairs: Mapping[tuple[str, str], str]) -> dict[tuple[str, str, str], float]:
    """1 for each (a, b)'s current state and 0 for its other states (a closed label set)."""
    return {(a, b, s): float(s == state) for (a, b), state in pairs.items() for s in STATES}


def figures(comparison: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The numbers of a comparison an audit row keeps."""
    return {k: comparison.get(k) for k in keys}


class Tally:
    """Windows each version scored and failed (stage call failed or output not a probability) since the last take()."""

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
        counts, self._counts = self._counts, {}
        return {v: (bad / (good + bad) if good + bad else None) for v, (good, bad) in counts.items()}
