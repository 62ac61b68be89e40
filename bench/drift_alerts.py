"""Input drift alerts on held-out bundled candles, through aifx.drift as the service runs it (issue 26).

    .venv/bin/python -m bench.drift_alerts     # the lines bench.promoter_sim prints about drift (~30 s)

The bundled EUR/USD 1h candles (2017, 6,225 bars) give each version's served feature rows: the last row of
every window (aifx.features.sample_windows, as the service appends it). Stage 1's column is a stand-in, a
fixed logistic function of the features scaled by the training rows (no network: nothing is fitted, so its
outputs on the training rows are as out-of-sample as on new ones).

Zero drift, held out: the rows are cut into BLOCKS contiguous blocks; for each, the reference's bins and
calibrated thresholds (aifx.drift.build_reference and calibrate, as at import) come from the other blocks,
and the held-out block's rows are served in time order into a DriftWindows (500-row windows judged from 200
rows), read after every bar. A window read is an alert when any column's PSI is above its threshold for the
window's size (DriftWindows.ratios() > 1, what aifx_feature_drift_psi_ratio and the alert read). The same
reads with the reference's thresholds left out give the old fixed rule (PSI > 0.25 on any column).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aifx.candles import Candles
from aifx.drift import DriftWindows, Reference, build_reference
from aifx.drift_calibration import calibrate
from aifx.features import sample_windows
from aifx.versions import default_spec

DATA = Path(__file__).resolve().parent.parent / "data" / "FOREX_EURUSD_1H_ASK.csv"
VERSIONS = ("v3.0", "v3.1", "v3.2")
BLOCKS = 6  # held-out blocks of ~1,030 bars: each fills a 500-row window and slides it over ~530 bars
KEY = ("EUR/USD", "1h")


@dataclass(frozen=True)
class Reads:
    """Window reads of one scenario: how many were judged and how many alerted (calibrated and old rule)."""

    judged: int
    alerts: int
    old_rule: int
    blocks: int = 1  # served stretches
    blocks_alerted: int = 0  # stretches with at least one alert (the alert would have fired)

    def __add__(self, other: Reads) -> Reads:
        return Reads(self.judged + other.judged, self.alerts + other.alerts, self.old_rule + other.old_rule,
                     self.blocks + other.blocks, self.blocks_alerted + other.blocks_alerted)  # fmt: skip

    @property
    def rate(self) -> float:
        return self.alerts / self.judged if self.judged else 0.0

    @property
    def old_rate(self) -> float:
        return self.old_rule / self.judged if self.judged else 0.0


def load() -> Candles:
    from training.candles_csv import load_candles_csv

    return load_candles_csv(DATA)


def scaled_returns(candles: Candles, factor: float) -> Candles:
    """The candles with every log return (close to close, and each price against the previous close) scaled by
    `factor`: a volatility regime `factor` times the training one, or candles of a longer timeframe sent as 1h."""
    prev = np.concatenate([[candles.open[0]], candles.close[:-1]])
    steps = np.log(candles.close / prev)
    new_prev = candles.open[0] * np.exp(factor * np.concatenate([[0.0], np.cumsum(steps)[:-1]]))

    def move(x: np.ndarray) -> np.ndarray:
        return new_prev * np.exp(factor * np.log(x / prev))

    return Candles(candles.timestamp, move(candles.open), move(candles.high), move(candles.low), move(candles.close))


def served_rows(candles: Candles, version: str) -> np.ndarray:
    """The unscaled feature row of each bar as served (the last row of its window), time-ordered."""
    spec = default_spec(version)
    x, _ = sample_windows(candles, spec.features, spec.window)
    return x[:, -1, :]


def stage1_stand_in(x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """A fixed Stage 1: the logistic of fixed weights times the features scaled by the training rows."""
    weights = np.random.default_rng(26).normal(size=x.shape[1]) / np.sqrt(x.shape[1])
    return 1.0 / (1.0 + np.exp(-((x - mean) / np.where(sd > 0, sd, 1.0)) @ weights))


def reference_of(features: tuple[str, ...], runs: list[np.ndarray]) -> tuple[Reference, np.ndarray, np.ndarray]:
    """Bins and calibrated thresholds from the training runs (contiguous stretches, each its own series of
    windows), and the scaler of the stand-in Stage 1."""
    x = np.concatenate(runs)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    with_s1 = [np.column_stack([r, stage1_stand_in(r, mean, sd)]) for r in runs]
    gap = np.full((1, x.shape[1] + 1), np.nan)  # a NaN row: no calibration window spans two runs
    rows = np.concatenate([part for r in with_s1 for part in (r, gap)][:-1])
    flat = np.concatenate(with_s1)
    ref = build_reference(features, flat[:, :-1], flat[:, -1], stage1_source="bench stand-in (no fitting)")
    return calibrate(ref, rows), mean, sd


def serve(reference: Reference, x: np.ndarray, stage1: np.ndarray) -> Reads:
    """Serve the rows in order into fresh windows and read them after every bar, as the service's publisher."""
    uncalibrated = Reference(reference.features, reference.bins, reference.rows)
    drift = DriftWindows({"calibrated": reference, "old": uncalibrated})
    judged = alerts = old = 0
    for row, p in zip(x, stage1, strict=True):
        for version in ("calibrated", "old"):
            drift.add(*KEY, version, row, float(p))
        drift.psi()
        ratios = drift.ratios()
        if ratios["calibrated"]:
            judged += 1
            alerts += max(ratios["calibrated"].values()) > 1.0
            old += max(ratios["old"].values()) > 1.0
    return Reads(judged, alerts, old, 1, int(alerts > 0))


def held_out(candles: Candles, version: str, factor: float = 1.0, blocks: int = BLOCKS) -> Reads:
    """Each block served against a reference calibrated on the other blocks (its returns scaled by `factor`)."""
    features = default_spec(version).features
    rows = served_rows(candles, version)
    shown = rows if factor == 1.0 else served_rows(scaled_returns(candles, factor), version)
    edges = np.linspace(0, len(rows), blocks + 1).astype(int)
    total = Reads(0, 0, 0, 0, 0)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        runs = [r for r in (rows[:lo], rows[hi:]) if len(r)]
        ref, mean, sd = reference_of(features, runs)
        total += serve(ref, shown[lo:hi], stage1_stand_in(shown[lo:hi], mean, sd))
    return total


def later(candles: Candles, version: str, share: float = 2 / 3) -> Reads:
    """The last third served against a reference calibrated on the first two thirds (the market's own change)."""
    features = default_spec(version).features
    rows = served_rows(candles, version)
    cut = int(len(rows) * share)
    ref, mean, sd = reference_of(features, [rows[:cut]])
    return serve(ref, rows[cut:], stage1_stand_in(rows[cut:], mean, sd))


def lines(candles: Candles | None = None, versions: tuple[str, ...] = VERSIONS) -> list[str]:
    """The drift lines bench.promoter_sim prints (one per figure, the versions side by side)."""
    candles = candles or load()
    zero = {v: held_out(candles, v) for v in versions}
    doubled = {v: held_out(candles, v, factor=2.0) for v in versions}
    late = {v: later(candles, v) for v in versions}
    names = "/".join(versions)

    def row(reads: dict[str, Reads], old: bool = False) -> str:
        return " ".join(f"{r.old_rate if old else r.rate:.4f}" for r in reads.values())

    judged = sum(r.judged for r in zero.values()) // len(versions)
    return [
        f"zero-drift PSI alerts per window (calibrated thresholds, held-out sixths of the bundled candles, "
        f"{judged} reads per version) {names}: {row(zero)}",
        f"zero-drift PSI > 0.25 on any column (the old fixed rule, same reads) {names}: {row(zero, old=True)}",
        f"PSI alerts per window with log returns doubled (held-out sixths; detection) {names}: {row(doubled)} "
        f"(sixths with an alert: {' '.join(f'{r.blocks_alerted}/{r.blocks}' for r in doubled.values())})",
        f"PSI alerts per window, last third against the first two thirds (the market's own change) {names}: "
        f"{row(late)}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args()
    t0 = time.perf_counter()
    for line in lines():
        print(line)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
