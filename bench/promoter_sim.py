"""The promoter as it runs (issue 26), simulated through aifx.anchored and aifx.promotion: false promotions,
false rollbacks and power over two years of hourly bars.

    .venv/bin/python -m bench.promoter_sim              # docs/statistics.md's figures (a few minutes, 2 cores)
    .venv/bin/python -m bench.promoter_sim --runs 100   # quicker, noisier

Each run: hourly EUR/USD prices from a GARCH(1,1) with Student-t innovations (volatility clustering, fat
tails; six steps inside each bar give its high and low), Wilder's ATR14, the real trade rule
(aifx.trade.side_outcomes: 12-bar trades, so trades of neighbouring bars overlap), an incumbent and three
challengers in `auto` mode whose signals are persistent and blind to the future (bench.power's). Every pass
(24 bars) the promoter advances each anchored sequence with the bars resolved since the last pass
(aifx.anchored.advance_series, the arithmetic of the service's aifx.anchored.advance), applies
aifx.promotion.decide, and on a switch starts probation with a new anchor (previous, promoted); probation
rolls back on a_better or a guardrail (aifx.promotion.breaches) and confirms after PROBATION_BARS.
Alpha: 0.05 split over the 3 challengers and spent over each challenger's successive anchors
(aifx.anchored.anchor_alpha), as the service does.

The drift lines (bench.drift_alerts): input drift is an alert, not a guardrail; its zero-drift alert rate per
window read on held-out sixths of the bundled candles, through aifx.drift's calibrated thresholds and windows.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from aifx import anchored, paired, promotion, trade
from aifx.labels import wilder_atr
from bench.power import ATR_PERIOD, HOURLY_VOL, PIP, START_PRICE, STEPS_IN_BAR, Runs, null_signals, r_of

BARS = 2 * 365 * 24  # two years of hourly bars
PASS_BARS = 24  # bars between promoter passes
DAYS_90, YEAR = 90 * 24, 365 * 24
CHALLENGERS = 3
ALPHA = 0.05
LIMITS = promotion.Limits(min_effect=paired.MIN_EFFECT, max_drawdown_r=100.0)  # the settings' defaults
PROBATION_BARS = 500  # the policy's default
GARCH_A, GARCH_B, T_DF = 0.08, 0.90, 4.0  # persistence 0.98; Student-t with 4 degrees of freedom
TIMES = [f"{i:06d}" for i in range(BARS + 1)]  # sortable bar times, as the state keeps ISO times
KEY = anchored.series_key("EURUSD", "1h")


def garch_bars(rng: np.random.Generator, bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, close) of one run: GARCH(1,1) bar variance, unit-variance Student-t steps inside the bar."""
    omega = HOURLY_VOL**2 * (1.0 - GARCH_A - GARCH_B)  # the unconditional hourly sd stays HOURLY_VOL
    z = rng.standard_t(T_DF, size=(bars, STEPS_IN_BAR)) / math.sqrt(T_DF / (T_DF - 2.0))
    var, ret = np.empty(bars), np.empty(bars)
    v = HOURLY_VOL**2
    sums = z.sum(axis=1) / math.sqrt(STEPS_IN_BAR)
    for t in range(bars):  # the recursion: each bar's variance from the previous bar's shock
        var[t] = v
        ret[t] = math.sqrt(v) * sums[t]
        v = omega + GARCH_A * ret[t] * ret[t] + GARCH_B * v
    steps = z * np.sqrt(var / STEPS_IN_BAR)[:, None]
    path = START_PRICE * np.exp(np.cumsum(steps.reshape(-1))).reshape(bars, STEPS_IN_BAR)
    opens = np.concatenate([[START_PRICE], path[:-1, -1]])
    return np.maximum(path.max(axis=1), opens), np.minimum(path.min(axis=1), opens), path[:, -1]


def outcomes(rng: np.random.Generator, bars: int) -> Runs:
    """R of a long and a short opened at each of `bars` bars, by the real trade rule (one run)."""
    rule = trade.TradeRule()
    high, low, close = garch_bars(rng, bars + ATR_PERIOD + rule.horizon_bars)
    atr = wilder_atr(high, low, close, ATR_PERIOD)
    _, long_pips = trade.side_outcomes(trade.LONG, high, low, close, atr, PIP, rule)
    _, short_pips = trade.side_outcomes(trade.SHORT, high, low, close, atr, PIP, rule)
    keep = slice(ATR_PERIOD, ATR_PERIOD + bars)
    atr_pips = atr[keep] / PIP  # R = pips after cost / ATR in pips, as aifx.paired.r_value
    return Runs(long_pips[keep][None, :] / atr_pips, short_pips[keep][None, :] / atr_pips)


def versions(rng: np.random.Generator, o: Runs, oracle_share: float) -> np.ndarray:
    """R per bar of the incumbent (row 0) and the challengers; challenger 1 takes the winning side on a share."""
    bars = o.r_long.shape[1]
    sig = null_signals(rng, 1 + CHALLENGERS, bars)
    if oracle_share > 0:
        knows = rng.random(bars) < oracle_share
        sig[1] = np.where(knows, np.where(o.r_long[0] >= o.r_short[0], 1, -1), sig[1])
    return np.stack([r_of(s[None, :], o)[0] for s in sig])


@dataclass
class Anchor:
    """The simulation's row of comparison_anchors: the pure state and the next bar to feed it."""

    a: int
    b: int
    state: anchored.Anchored
    fed: int


@dataclass(frozen=True)
class Life:
    """What happened in one run: each switch (bar, challenger) and each rollback (bar, challenger)."""

    switches: tuple[tuple[int, int], ...]
    rollbacks: tuple[tuple[int, int], ...]


def promoter_run(r: np.ndarray) -> Life:
    """The promoter's passes over one run's R per version: anchors, decisions, switches, probation, rollbacks."""
    bars = r.shape[1]
    active, mode = 0, {c: "auto" for c in range(1, 1 + CHALLENGERS)}
    index = dict.fromkeys(mode, 0)  # j of each challenger's next anchor
    anchors: dict[tuple[int, int], Anchor] = {}
    probation: dict[int, int] = {}  # challenger -> the version it replaced
    last: dict[int, str | None] = dict.fromkeys(mode)
    switches, rollbacks = [], []

    def start(a: int, b: int, at: int) -> Anchor:
        alpha = anchored.anchor_alpha(ALPHA, CHALLENGERS, index[b])
        index[b] += 1
        anchors[(a, b)] = Anchor(a, b, anchored.start(TIMES[at], alpha, LIMITS.min_effect), at)
        return anchors[(a, b)]

    def advance(a: int, b: int, resolved: int, at: int) -> anchored.Anchored:
        x = anchors.get((a, b)) or start(a, b, at)
        if resolved > x.fed:
            lo, hi = x.fed, resolved
            x.state = anchored.advance_series(x.state, KEY, TIMES[lo:hi], r[a, lo:hi], r[b, lo:hi])
            x.fed = resolved
        return x.state

    for c in mode:  # armed before the first bar
        start(0, c, 0)
    for t in range(PASS_BARS, bars + 1, PASS_BARS):
        resolved = max(t - paired.HORIZON, 0)  # a bar resolves when its 12-bar trade has run
        for c in sorted(mode):
            if c in probation:
                prev = probation[c]
                s = advance(prev, c, resolved, t)
                broken = promotion.breaches(promotion.Watch(s.dd_a, s.dd_b, s.bars), LIMITS)
                step = promotion.decide_probation(broken, s.bars, PROBATION_BARS, s.decision)
                if step.action == "rollback":
                    active, mode[c] = prev, "recommend"
                    rollbacks.append((t, c))
                if step.action is not None:
                    del probation[c]
                continue
            if mode[c] == "off" or c == active:
                continue
            s = advance(active, c, resolved, t)
            broken = promotion.breaches(promotion.Watch(s.dd_a, s.dd_b, s.bars), LIMITS)
            step = promotion.decide(mode[c], s.decision or paired.COLLECTING, str(active), str(c), broken, last[c])
            if step.action == "switch":
                switches.append((t, c))
                probation[c] = active
                start(active, c, resolved)  # probation keeps testing from the switch
                active = c
            last[c] = step.action or last[c]
    return Life(tuple(switches), tuple(rollbacks))


def one_run(args: tuple[int, int, float, int]) -> Life:
    """One seeded run of `bars` bars (a picklable unit of work)."""
    seed, run, share, bars = args
    rng = np.random.default_rng([seed, run])
    return promoter_run(versions(rng, outcomes(rng, bars), share))


def oracle_gain(seed: int, runs: int = 20) -> float:
    """Mean R gained per bar on which a null version takes the side that won instead (the effect's unit)."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(runs):
        o = outcomes(rng, 5000)
        gains.append(float(np.mean(np.maximum(o.r_long, o.r_short) - r_of(null_signals(rng, 1, 5000), o))))
    return float(np.mean(gains))


@dataclass(frozen=True)
class Figures:
    """The shares of runs the docs quote for one scenario."""

    runs: int
    any_promotion: float  # any switch at all within two years
    null_promotion: float  # a switch to a null challenger (1..3 under the null, 2..3 otherwise)
    power_90d: float  # the better challenger switched in within 90 days
    power_year: float
    rolled_back: float  # of the runs where the better challenger was promoted, the share rolled back
    power_by_month: tuple[float, ...]


def figures(lives: Sequence[Life], effect: float, bars: int = BARS) -> Figures:
    """Shares of runs from the runs' switches and rollbacks."""
    n = len(lives)
    better = 1 if effect > 0 else None

    def first(life: Life, c: int) -> int | None:
        return next((t for t, x in life.switches if x == c), None)

    nulls = [c for c in range(1, 1 + CHALLENGERS) if c != better]
    null_hit = sum(any(x in nulls for _, x in life.switches) for life in lives)
    at = [first(life, better) if better else None for life in lives]
    promoted = [life for life, t in zip(lives, at, strict=True) if t is not None]
    back = sum(any(x == better for _, x in life.rollbacks) for life in promoted)
    months = range(720, bars + 1, 720)
    return Figures(
        runs=n,
        any_promotion=sum(bool(life.switches) for life in lives) / n,
        null_promotion=null_hit / n,
        power_90d=sum(t is not None and t <= DAYS_90 for t in at) / n,
        power_year=sum(t is not None and t <= YEAR for t in at) / n,
        rolled_back=back / len(promoted) if promoted else 0.0,
        power_by_month=tuple(sum(t is not None and t <= m for t in at) / n for m in months),
    )


def scenario(seed: int, runs: int, effect: float, gain: float, workers: int, bars: int = BARS) -> Figures:
    """`runs` runs with challenger 1 better by `effect` R per bar (0: all three null)."""
    share = effect / gain
    work = [(seed, i, share, bars) for i in range(runs)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            lives = list(pool.map(one_run, work, chunksize=8))
    else:
        lives = [one_run(w) for w in work]
    return figures(lives, effect, bars)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=600)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gain = oracle_gain(args.seed + 1000)
    print(f"# bench.promoter_sim: runs={args.runs} seed={args.seed} bars={BARS} pass={PASS_BARS} bars "
          f"{platform.processor() or platform.machine()} {datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    print(f"oracle gain per replaced bar: {gain:.4f} R")
    null = scenario(args.seed, args.runs, 0.0, gain, args.workers)
    print(f"false promotions (3 null challengers, any switch within 2 years): {null.any_promotion:.4f}")
    for effect in (0.1, 0.2):
        f = scenario(args.seed + int(effect * 100), args.runs, effect, gain, args.workers)
        print(f"+{effect:g} R/bar: power within 90 days {f.power_90d:.4f}")
        print(f"+{effect:g} R/bar: power within one year {f.power_year:.4f}")
        print(f"+{effect:g} R/bar: false rollbacks of the better challenger (of the runs promoting it) "
              f"{f.rolled_back:.4f}")  # fmt: skip
        print(f"+{effect:g} R/bar: a null challenger promoted beside it {f.null_promotion:.4f}")
        print(f"+{effect:g} R/bar: power by month " + " ".join(f"{m + 1}:{p:.3f}" for m, p in
                                                               enumerate(f.power_by_month)))  # fmt: skip
    from bench import drift_alerts

    for line in drift_alerts.lines():
        print(line)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
