"""False-winner rate and power of the paired comparison (aifx/paired.py) on simulated EUR/USD hours.

    .venv/bin/python -m bench.power            # the table in docs/statistics.md (a few minutes on 2 cores)
    .venv/bin/python -m bench.power --runs 200 # quicker, noisier

Each run: a geometric random walk of hourly EUR/USD bars (high/low from six steps inside the bar),
Wilder's ATR14, the real trade rule (aifx.trade.side_outcomes) for the long and the short of every
bar, and two versions whose signals (long/short/hold, persistent like a model's) know nothing of the
future. The procedure is read after every 10 resolved bars. tests/unit/test_paired_simulation.py
runs the null part of this as the acceptance test.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from aifx import paired, trade
from aifx.labels import wilder_atr

PIP = 0.0001
START_PRICE = 1.13
HOURLY_VOL = 0.0009  # sd of hourly log returns of the bundled EUR/USD 1h data (2017): 0.00092
STEPS_IN_BAR = 6
ATR_PERIOD = 14
P_LONG = P_SHORT = 0.2  # each version trades 40 % of bars
PERSIST = 0.8  # a signal repeats the previous bar's with this probability (runs of ~5 bars)
READ_EVERY = 10  # bars between reads of the procedure
CHUNK = 100  # runs simulated at once (memory)


@dataclass(frozen=True)
class Runs:
    """Per run (rows) and bar (columns): R of a long and of a short opened at the bar's close."""

    r_long: np.ndarray
    r_short: np.ndarray


def simulate_bars(rng: np.random.Generator, runs: int, bars: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(high, low, close) of `runs` independent random walks of `bars` hourly bars."""
    steps = rng.normal(0.0, HOURLY_VOL / math.sqrt(STEPS_IN_BAR), size=(runs, bars * STEPS_IN_BAR))
    path = START_PRICE * np.exp(np.cumsum(steps, axis=1)).reshape(runs, bars, STEPS_IN_BAR)
    opens = np.concatenate([np.full((runs, 1), START_PRICE), path[:, :-1, -1]], axis=1)
    high = np.maximum(path.max(axis=2), opens)
    low = np.minimum(path.min(axis=2), opens)
    return high, low, path[:, :, -1]


def simulate_outcomes(rng: np.random.Generator, runs: int, bars: int, horizon: int = paired.HORIZON) -> Runs:
    """R of a long and a short on `bars` resolved bars per run, by the real trade rule (aifx.trade)."""
    rule = trade.TradeRule(horizon_bars=horizon)
    total = bars + ATR_PERIOD + horizon
    r_long, r_short = np.empty((runs, bars)), np.empty((runs, bars))
    for lo in range(0, runs, CHUNK):
        high, low, close = simulate_bars(rng, min(CHUNK, runs - lo), total)
        for i in range(high.shape[0]):
            atr = wilder_atr(high[i], low[i], close[i], ATR_PERIOD)
            _, long_pips = trade.side_outcomes(trade.LONG, high[i], low[i], close[i], atr, PIP, rule)
            _, short_pips = trade.side_outcomes(trade.SHORT, high[i], low[i], close[i], atr, PIP, rule)
            keep = slice(ATR_PERIOD, ATR_PERIOD + bars)
            atr_pips = atr[keep] / PIP  # R = pips after cost / ATR in pips, as aifx.paired.r_value
            r_long[lo + i], r_short[lo + i] = long_pips[keep] / atr_pips, short_pips[keep] / atr_pips
    if not (np.isfinite(r_long).all() and np.isfinite(r_short).all()):
        raise AssertionError("every simulated bar must resolve")
    return Runs(r_long, r_short)


def null_signals(rng: np.random.Generator, runs: int, bars: int) -> np.ndarray:
    """+1 long, -1 short, 0 hold per bar: a fresh draw with probability 1 - PERSIST, else the previous signal."""
    fresh = rng.choice(
        np.array([1, -1, 0], dtype=np.int8), size=(runs, bars), p=[P_LONG, P_SHORT, 1 - P_LONG - P_SHORT]
    )
    redraw = rng.random((runs, bars)) >= PERSIST
    redraw[:, 0] = True
    last = np.maximum.accumulate(np.where(redraw, np.arange(bars), 0), axis=1)
    return np.take_along_axis(fresh, last, axis=1)


def r_of(signal: np.ndarray, o: Runs) -> np.ndarray:
    """Each bar's R of a version with these signals (hold = 0)."""
    return np.where(signal == 1, o.r_long, np.where(signal == -1, o.r_short, 0.0))


def oracle_gain(seed: int, runs: int = 200, bars: int = 2000) -> float:
    """Mean R gained per bar on which a null version is replaced by the better side in hindsight (pilot)."""
    rng = np.random.default_rng(seed)
    o = simulate_outcomes(rng, runs, bars)
    return float(np.mean(np.maximum(o.r_long, o.r_short) - r_of(null_signals(rng, runs, bars), o)))


def versions(rng: np.random.Generator, o: Runs, oracle_share: float) -> tuple[np.ndarray, np.ndarray]:
    """(r_a, r_b): two independent null versions; on a random `oracle_share` of bars b takes the side that won."""
    runs, bars = o.r_long.shape
    sig_a, sig_b = null_signals(rng, runs, bars), null_signals(rng, runs, bars)
    if oracle_share > 0:
        knows = rng.random((runs, bars)) < oracle_share
        sig_b = np.where(knows, np.where(o.r_long >= o.r_short, 1, -1).astype(np.int8), sig_b)
    return r_of(sig_a, o), r_of(sig_b, o)


@dataclass(frozen=True)
class Verdicts:
    """Per run: the first read (bars) at which each state was reached (0 = never), the state at the last read."""

    b_better_at: np.ndarray
    a_better_at: np.ndarray
    no_difference_at: np.ndarray
    final: list[str]


def sequential(diff: np.ndarray, horizon: int = paired.HORIZON, alpha: float = paired.ALPHA) -> Verdicts:
    """aifx.paired's confidence sequence and comparison_state read after every READ_EVERY bars of each run."""
    block = 2 * horizon
    rho2 = paired.mixture_rho2(paired.EXPECTED_BARS / block, alpha)
    low, high = paired.cs_path(paired.block_means(diff, block), alpha, rho2)
    reads = np.arange(READ_EVERY, diff.shape[1] + 1, READ_EVERY)
    k_at = reads // block  # blocks complete at each read: the state changes only when a block completes
    runs = diff.shape[0]
    first = {
        s: np.zeros(runs, dtype=np.int64) for s in (paired.B_BETTER, paired.A_BETTER, paired.NO_MEANINGFUL_DIFFERENCE)
    }
    final = []
    for r in range(runs):
        cache: dict[int, str] = {}
        state = paired.COLLECTING
        for n, k in zip(reads, k_at, strict=True):
            if k not in cache:
                lo, hi = (float(low[r, k - 1]), float(high[r, k - 1])) if k >= 2 else (None, None)
                cache[k] = paired.comparison_state(lo, hi, int(k))
            state = cache[k]
            if state in first and first[state][r] == 0:
                first[state][r] = n
        final.append(state)
    return Verdicts(first[paired.B_BETTER], first[paired.A_BETTER], first[paired.NO_MEANINGFUL_DIFFERENCE], final)


def naive_welch_any(r_a: np.ndarray, r_b: np.ndarray, start: int, alpha: float = paired.ALPHA) -> np.ndarray:
    """Per run: did a two-sample Welch t-test of r_b vs r_a have p < alpha at any read from `start` bars on?"""
    from scipy import stats

    reads = np.arange(READ_EVERY, r_a.shape[1] + 1, READ_EVERY)
    reads = reads[reads >= start]
    n = reads.astype(np.float64)

    def moments(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s1, s2 = np.cumsum(r, axis=1)[:, reads - 1], np.cumsum(r * r, axis=1)[:, reads - 1]
        mean = s1 / n
        return mean, np.maximum(s2 - s1 * mean, 0.0) / (n - 1) / n

    (ma, va), (mb, vb) = moments(r_a), moments(r_b)
    se2 = va + vb
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (mb - ma) / np.sqrt(se2)
        df = se2**2 / ((va * va + vb * vb) / (n - 1))
        p = 2.0 * stats.t.sf(np.abs(t), df)
    return np.nan_to_num(p, nan=1.0).min(axis=1) < alpha


@dataclass(frozen=True)
class Cell:
    """One row of the table: shares of runs (a state counts if it was reached at any read)."""

    bars: int
    effect: float
    oracle_share: float
    runs: int
    mean_diff: float
    b_better: float
    a_better: float
    any_winner: float
    final_b_better: float
    no_difference: float
    median_bars_to_b_better: float | None
    naive_any: float
    seconds: float


def run_cell(seed: int, runs: int, bars: int, effect: float = 0.0, gain: float = 1.0) -> Cell:
    """`runs` simulated runs of `bars` bars with b better by `effect` R per bar (0 = the null)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    share = effect / gain
    r_a, r_b = versions(rng, simulate_outcomes(rng, runs, bars), share)
    v = sequential(r_b - r_a)
    naive = naive_welch_any(r_a, r_b, start=paired.MIN_BLOCKS * 2 * paired.HORIZON)
    b_hit = v.b_better_at > 0
    return Cell(
        bars=bars,
        effect=effect,
        oracle_share=share,
        runs=runs,
        mean_diff=float(np.mean(r_b - r_a)),
        b_better=float(np.mean(b_hit)),
        a_better=float(np.mean(v.a_better_at > 0)),
        any_winner=float(np.mean(b_hit | (v.a_better_at > 0))),
        final_b_better=float(np.mean([s == paired.B_BETTER for s in v.final])),
        no_difference=float(np.mean(v.no_difference_at > 0)),
        median_bars_to_b_better=float(np.median(v.b_better_at[b_hit])) if b_hit.any() else None,
        naive_any=float(np.mean(naive)),
        seconds=time.perf_counter() - t0,
    )


def autocorrelation(diff: np.ndarray, lags: tuple[int, ...]) -> dict[int, float]:
    """Mean over runs of the lag-j autocorrelation of each run's series."""
    x = diff - diff.mean(axis=1, keepdims=True)
    var = (x * x).sum(axis=1)
    return {j: float(np.mean((x[:, j:] * x[:, :-j]).sum(axis=1) / var)) for j in lags}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gain = oracle_gain(args.seed + 1000)
    print(f"# bench.power: runs={args.runs} seed={args.seed} {platform.processor() or platform.machine()} "
          f"{datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    print(f"oracle gain per replaced bar: {gain:.4f} R")
    rng = np.random.default_rng(args.seed + 2000)
    r_a, r_b = versions(rng, simulate_outcomes(rng, 200, 20000), 0.0)
    block = 2 * paired.HORIZON
    low, high = paired.cs_path(paired.block_means(r_b - r_a, block))
    widths = {
        n: float(np.median(high[:, n // block - 1] - low[:, n // block - 1]) / 2) for n in (480, 2000, 10000, 20000)
    }
    print(
        "null confidence-sequence half-width (median of 200 runs) by bars:", {n: round(w, 3) for n, w in widths.items()}
    )
    print(f"per-bar sd of the null diff: {float(np.std(r_b - r_a)):.3f} R; share of bars a version trades: "
          f"{float(np.mean(r_a != 0)):.3f}; mean R of a null version per bar: {float(np.mean(r_a)):+.4f}")  # fmt: skip
    ac = autocorrelation(r_b - r_a, (1, 2, 6, 11, 12, 13, 24))
    acb = autocorrelation(paired.block_means(r_b - r_a, 2 * paired.HORIZON), (1, 2))
    print("null diff autocorrelation by lag (bars):", {j: round(v, 3) for j, v in ac.items()})
    print("null block-mean autocorrelation by lag (blocks):", {j: round(v, 3) for j, v in acb.items()})
    print()
    print("| bars | planted effect (R/bar) | oracle share | mean diff (R/bar) | any winner at some read | "
          "`b_better` at some read | `a_better` at some read | `b_better` at the end | "
          "`no_meaningful_difference` at some read | median bars to `b_better` | naive Welch | s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    cells = [(2000, 0.0), (10000, 0.0), (2000, 0.05), (2000, 0.1), (10000, 0.05), (10000, 0.1)]
    for i, (bars, effect) in enumerate(cells):
        c = run_cell(args.seed + i, args.runs, bars, effect, gain)
        med = "—" if c.median_bars_to_b_better is None else f"{c.median_bars_to_b_better:.0f}"
        print(f"| {bars} | {effect:g} | {c.oracle_share:.4f} | {c.mean_diff:+.4f} | {c.any_winner:.3f} | "
              f"{c.b_better:.3f} | {c.a_better:.3f} | {c.final_b_better:.3f} | {c.no_difference:.3f} | {med} | "
              f"{c.naive_any:.3f} | {c.seconds:.0f} |", flush=True)  # fmt: skip
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
