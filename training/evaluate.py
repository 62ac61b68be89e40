"""Walk-forward evaluation: train on the past of each test block, purge the label horizon, calibrate in between.

Each fold's training samples are split in time: the network fits the earlier part (the baselines still
learn from all of them), and the last CAL_SHARE, purged by the label horizon from the fit part, is the
fold's calibration block. On it, per stage, Platt and isotonic maps are compared (training/calibration.py)
and Stage 1's threshold is chosen; the fold's test block is then scored raw and calibrated. A stage keeps
calibration only where the maps chosen per fold lower the Brier score on the calibration blocks pooled over
folds; test folds never take part in a choice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from aifx.candles import Candles
from aifx.labels import BarrierParams
from aifx.versions import Scaler, VersionSpec
from training import calibration as cal
from training.backtest import backtest, rule_text
from training.dataset import Dataset
from training.metrics import classification_report
from training.model import fit, predict_proba

Log = Callable[[str], None]
CAL_SHARE = 0.25  # the last quarter of a fold's training samples calibrates; the network never sees it
THRESHOLD_OBJECTIVE = (
    "maximum Matthews correlation of Stage 1 on the calibration blocks (calibrated probabilities, grid 0.005): "
    "0 for any constant or random signal at every base rate, so it never buys its score by always firing"
)


@dataclass(frozen=True)
class Fold:
    """Sample indices of one walk-forward fold."""

    number: int
    train: np.ndarray
    test: np.ndarray


def walk_forward_folds(bars: np.ndarray, folds: int, horizon: int) -> list[Fold]:
    """Split into folds+1 time blocks; fold k tests block k on samples whose labels end before it."""
    edges = np.linspace(0, len(bars), folds + 2).astype(int)
    out = []
    for k in range(1, folds + 1):
        test = np.arange(edges[k], edges[k + 1])
        first_test_bar = bars[test[0]]
        train = np.flatnonzero(bars + horizon < first_test_bar)  # purge: label must end before the test
        out.append(Fold(k, train, test))
    return out


def calibration_split(
    bars: np.ndarray, idx: np.ndarray, horizon: int, share: float = CAL_SHARE
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, calibrate) of time-ordered samples: the last `share` calibrates; fit labels end before it."""
    n_cal = int(round(len(idx) * share))
    if n_cal == 0:
        return idx, idx[:0]
    calib, head = idx[-n_cal:], idx[:-n_cal]
    return head[bars[head] + horizon < bars[calib[0]]], calib


def _scaled(ds: Dataset, scaler: Scaler, idx: np.ndarray) -> np.ndarray:
    return scaler.transform(ds.x[idx])


def _logreg_scores(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    """Logistic regression on the same flattened, scaled windows."""
    clf = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(x_train.reshape(len(x_train), -1), y.astype(int))
    return clf.predict_proba(x_test.reshape(len(x_test), -1))[:, 1]


def _prior_scores(y_train: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Prior-rate baseline: says 'positive' at random with the training base rate."""
    rng = np.random.default_rng(seed)
    return (rng.random(n) < y_train.mean()).astype(float)


@dataclass(frozen=True)
class StageFold:
    """One stage trained on a fold's past, calibrated on its calibration block and scored on its test block."""

    test: np.ndarray
    y: np.ndarray
    model: np.ndarray  # raw network probabilities on the test block
    calibrated: np.ndarray  # the same through the fold's chosen map
    logreg: np.ndarray
    prior: np.ndarray
    cal_y: np.ndarray  # outcomes of the calibration block
    choice: cal.Choice  # the fold's calibration: method, map, cross-fitted probabilities of the block
    predict: Callable[[np.ndarray], np.ndarray]  # raw probabilities of any samples

    def served(self, kept: bool) -> np.ndarray:
        """Test probabilities as the service would give them."""
        return self.calibrated if kept else self.model

    def validation(self, kept: bool) -> np.ndarray:
        """Calibration-block probabilities as served (cross-fitted when calibrated)."""
        return self.choice.crossfit[self.choice.method if kept else cal.IDENTITY]


def _evaluate_stage(
    ds: Dataset, spec: VersionSpec, fold: Fold, y: np.ndarray, mask: np.ndarray, cfg: dict[str, int]
) -> StageFold:
    """Train on the fold's (masked) past before its calibration block, calibrate, score its (masked) test block."""
    past = fold.train[mask[fold.train]]
    train, calib = calibration_split(ds.bars, past, ds.horizon)
    test = fold.test[mask[fold.test]]
    scaler = Scaler.fit(spec.features, ds.x[train].reshape(-1, ds.x.shape[2]))
    x_train, x_test = _scaled(ds, scaler, train), _scaled(ds, scaler, test)
    model = fit(x_train, y[train], cfg["seed"] + fold.number, cfg["epochs"], architecture=spec.architecture,
                size=spec.model_size)  # fmt: skip
    choice = cal.choose(predict_proba(model, _scaled(ds, scaler, calib)), y[calib])
    raw = predict_proba(model, x_test)
    # The baselines learn from the fold's whole past with its own scaler, exactly as before calibration existed.
    past_scaler = Scaler.fit(spec.features, ds.x[past].reshape(-1, ds.x.shape[2]))
    x_past, x_test_past = _scaled(ds, past_scaler, past), _scaled(ds, past_scaler, test)
    return StageFold(
        test,
        y[test],
        raw,
        choice.calibration(raw),
        _logreg_scores(x_past, y[past], x_test_past, cfg["seed"]),
        _prior_scores(y[past], len(test), cfg["seed"] + fold.number),
        y[calib],
        choice,
        lambda idx: predict_proba(model, _scaled(ds, scaler, idx)),
    )


def evaluate(
    ds: Dataset, candles: Candles, spec: VersionSpec, folds: int, epochs: int, seed: int, log: Log
) -> dict[str, object]:
    """Per-fold and pooled metrics of both stages (raw and calibrated), both baselines, and the cost backtest."""
    cfg = {"epochs": epochs, "seed": seed}
    all_rows = np.ones(len(ds.y1), dtype=bool)
    stage2_rows = (ds.y1 == 1) & ~np.isnan(ds.y2)
    runs: dict[int, list[StageFold]] = {1: [], 2: []}
    direction: list[tuple[np.ndarray, np.ndarray]] = []  # Stage 2 raw and calibrated P(long) on Stage 1's tests
    fold_list = walk_forward_folds(ds.bars, folds, ds.horizon)
    for fold in fold_list:
        start = time.monotonic()
        s1 = _evaluate_stage(ds, spec, fold, ds.y1, all_rows, cfg)
        s2 = _evaluate_stage(ds, spec, fold, np.nan_to_num(ds.y2), stage2_rows, cfg)
        runs[1].append(s1)
        runs[2].append(s2)
        p2 = s2.predict(s1.test)
        direction.append((p2, s2.choice.calibration(p2)))
        log(f"  fold {fold.number}/{folds}: train {len(fold.train)} test {len(fold.test)} "
            f"stage1 {s1.choice.method} Brier {cal.brier(s1.y, s1.model):.4f} -> {cal.brier(s1.y, s1.calibrated):.4f}, "
            f"stage2 {s2.choice.method} ({time.monotonic() - start:.1f}s)")  # fmt: skip
    kept = {s: _kept(r) for s, r in runs.items()}
    thresholds = [cal.mcc_threshold(sf.cal_y, sf.validation(kept[1]))[0] for sf in runs[1]]
    out: dict[str, object] = {
        "stage1": _stage_block(fold_list, ds, runs[1], kept[1], thresholds),
        "stage2": _stage_block(fold_list, ds, runs[2], kept[2], [0.5] * len(fold_list)),
    }
    out["stage1"]["threshold"] = _threshold_block(runs[1], kept[1], thresholds)  # type: ignore[index]
    signal_bars, signal_sides = [], []
    for s1, t, (raw2, cal2) in zip(runs[1], thresholds, direction, strict=True):
        fired = s1.served(kept[1]) >= t
        signal_bars.append(ds.bars[s1.test[fired]])
        signal_sides.append(np.where((cal2 if kept[2] else raw2)[fired] >= 0.5, 1, -1))
    bars_all, sides_all = np.concatenate(signal_bars), np.concatenate(signal_sides)
    exits = BarrierParams()
    out["backtest"] = {
        "rule": rule_text(exits.trade_rule(), exits.atr_period),
        "costs": [backtest(candles, bars_all, sides_all, exits, c) for c in (1.0, 2.0)],
    }
    out["split"] = {
        "scheme": "walk-forward, expanding window",
        "folds": folds,
        "purge_bars": ds.horizon,
        "calibration_share": CAL_SHARE,
        "samples": int(len(ds.y1)),
        "test_samples": int(sum(len(f.test) for f in fold_list)),
    }
    return out


def _kept(runs: list[StageFold]) -> bool:
    """Whether the per-fold maps lower the Brier score on the calibration blocks pooled over folds."""
    before, after = _validation_brier(runs)
    return after < before


def _validation_brier(runs: list[StageFold]) -> tuple[float, float]:
    """Pooled calibration-block Brier score, raw and through each fold's chosen map (cross-fitted)."""
    y = np.concatenate([sf.cal_y for sf in runs])
    raw = np.concatenate([sf.validation(False) for sf in runs])
    return cal.brier(y, raw), cal.brier(y, np.concatenate([sf.validation(True) for sf in runs]))


def _threshold_block(runs: list[StageFold], kept: bool, per_fold: list[float]) -> dict[str, object]:
    """The served Stage 1 threshold (chosen on the pooled calibration blocks) and how it fires on the test folds."""
    y = np.concatenate([sf.cal_y for sf in runs])
    value, mcc = cal.mcc_threshold(y, np.concatenate([sf.validation(kept) for sf in runs]))
    fired = np.concatenate([sf.served(kept) >= t for sf, t in zip(runs, per_fold, strict=True)])
    return {
        "value": value,
        "objective": THRESHOLD_OBJECTIVE,
        "validation_mcc": mcc,
        "per_fold": per_fold,  # each fold's own choice, which its test metrics use
        "firing_rate_test": round(float(fired.mean()), 6) if len(fired) else None,
    }


def _fold_block(fold: Fold, ds: Dataset, sf: StageFold, kept: bool, threshold: float) -> dict[str, object]:
    """Metrics of the model (as served) and both baselines on one fold, with its calibration."""
    return {
        "fold": fold.number,
        "train_bars": [int(ds.bars[fold.train[0]]), int(ds.bars[fold.train[-1]])],
        "test_bars": [int(ds.bars[fold.test[0]]), int(ds.bars[fold.test[-1]])],
        "threshold": threshold,
        "model": classification_report(sf.y, sf.served(kept), threshold),
        "logreg": classification_report(sf.y, sf.logreg, 0.5),
        "prior": classification_report(sf.y, sf.prior, 0.5),
        "calibration": {
            "method": sf.choice.method,
            "validation_brier": {k: round(v, 6) for k, v in sf.choice.brier.items()},
            "test": {"before": cal.summary(sf.y, sf.model), "after": cal.summary(sf.y, sf.calibrated)},
        },
    }


def _stage_block(
    fold_list: list[Fold], ds: Dataset, runs: list[StageFold], kept: bool, thresholds: list[float]
) -> dict[str, object]:
    """Per-fold blocks, pooled test-fold metrics, calibration before/after and the pooled scores."""
    y = np.concatenate([sf.y for sf in runs])
    raw = np.concatenate([sf.model for sf in runs])
    calibrated = np.concatenate([sf.calibrated for sf in runs])
    served = calibrated if kept else raw
    per_sample = np.concatenate([np.full(len(sf.y), t) for sf, t in zip(runs, thresholds, strict=True)])
    before, after = _validation_brier(runs)
    return {
        "folds": [_fold_block(f, ds, sf, kept, t) for f, sf, t in zip(fold_list, runs, thresholds, strict=True)],
        "overall": {
            "model": classification_report(y, served, per_sample),
            "logreg": classification_report(y, np.concatenate([sf.logreg for sf in runs]), 0.5),
            "prior": classification_report(y, np.concatenate([sf.prior for sf in runs]), 0.5),
        },
        "calibration": {
            "kept": kept,
            "fold_methods": [sf.choice.method for sf in runs],
            "validation": {"brier_before": round(before, 6), "brier_after": round(after, 6)},
            "test": {
                "base_rate": round(float(y.mean()), 6) if len(y) else None,
                "before": cal.summary(y, raw),
                "after": cal.summary(y, calibrated),
            },
            "reliability": {"before": cal.reliability(y, raw), "after": cal.reliability(y, calibrated)},
        },
        "scores": {
            "y": y.astype(int).tolist(),
            "model": [round(float(v), 5) for v in served],
            "raw": [round(float(v), 5) for v in raw],
        },
    }
