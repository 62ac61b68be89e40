"""Walk-forward evaluation: train on the past of each test block, purge the label horizon."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from aifx.candles import Candles
from aifx.labels import BarrierParams
from aifx.versions import Scaler, VersionSpec
from training.backtest import backtest, rule_text
from training.dataset import Dataset
from training.metrics import classification_report
from training.model import fit, predict_proba

Log = Callable[[str], None]


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


@dataclass
class StageResult:
    """Out-of-sample scores of one stage, pooled over folds."""

    y: list[np.ndarray]
    model: list[np.ndarray]
    logreg: list[np.ndarray]
    prior: list[np.ndarray]
    folds: list[dict[str, object]]


@dataclass(frozen=True)
class StageFold:
    """One stage trained on a fold's past and scored on its test block."""

    test: np.ndarray
    y: np.ndarray
    model: np.ndarray
    logreg: np.ndarray
    prior: np.ndarray
    predict: Callable[[np.ndarray], np.ndarray]


def _evaluate_stage(
    ds: Dataset, spec: VersionSpec, fold: Fold, y: np.ndarray, mask: np.ndarray, cfg: dict[str, int]
) -> StageFold:
    """Train on the fold's (masked) past, score its (masked) test block."""
    train = fold.train[mask[fold.train]]
    test = fold.test[mask[fold.test]]
    scaler = Scaler.fit(spec.features, ds.x[train].reshape(-1, ds.x.shape[2]))
    x_train, x_test = _scaled(ds, scaler, train), _scaled(ds, scaler, test)
    model = fit(x_train, y[train], cfg["seed"] + fold.number, cfg["epochs"])
    return StageFold(
        test,
        y[test],
        predict_proba(model, x_test),
        _logreg_scores(x_train, y[train], x_test, cfg["seed"]),
        _prior_scores(y[train], len(test), cfg["seed"] + fold.number),
        lambda idx: predict_proba(model, _scaled(ds, scaler, idx)),
    )


def evaluate(
    ds: Dataset, candles: Candles, spec: VersionSpec, folds: int, epochs: int, seed: int, log: Log
) -> dict[str, object]:
    """Per-fold and pooled metrics of both stages, both baselines, and the cost backtest."""
    cfg = {"epochs": epochs, "seed": seed}
    all_rows = np.ones(len(ds.y1), dtype=bool)
    stage2_rows = (ds.y1 == 1) & ~np.isnan(ds.y2)
    results = {1: StageResult([], [], [], [], []), 2: StageResult([], [], [], [], [])}
    signal_bars, signal_sides = [], []
    for fold in walk_forward_folds(ds.bars, folds, ds.horizon):
        start = time.monotonic()
        s1 = _evaluate_stage(ds, spec, fold, ds.y1, all_rows, cfg)
        s2 = _evaluate_stage(ds, spec, fold, np.nan_to_num(ds.y2), stage2_rows, cfg)
        for stage, sf in ((1, s1), (2, s2)):
            res = results[stage]
            res.y.append(sf.y)
            res.model.append(sf.model)
            res.logreg.append(sf.logreg)
            res.prior.append(sf.prior)
            res.folds.append(_fold_block(fold, ds, sf, spec.threshold if stage == 1 else 0.5))
        fired = s1.test[s1.model >= spec.threshold]
        bars, sides = ds.bars[fired], np.where(s2.predict(fired) >= 0.5, 1, -1)
        signal_bars.append(bars)
        signal_sides.append(sides)
        log(f"  fold {fold.number}/{folds}: train {len(fold.train)} test {len(fold.test)} "
            f"stage1 F1 {results[1].folds[-1]['model']['f1']:.3f} "  # type: ignore[index]
            f"({time.monotonic() - start:.1f}s)")  # fmt: skip
    out: dict[str, object] = {f"stage{s}": _pooled(r, spec.threshold if s == 1 else 0.5) for s, r in results.items()}
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
        "samples": int(len(ds.y1)),
        "test_samples": int(sum(len(f.test) for f in walk_forward_folds(ds.bars, folds, ds.horizon))),
    }
    return out


def _fold_block(fold: Fold, ds: Dataset, sf: StageFold, threshold: float) -> dict[str, object]:
    """Metrics of the model and both baselines on one fold."""
    return {
        "fold": fold.number,
        "train_bars": [int(ds.bars[fold.train[0]]), int(ds.bars[fold.train[-1]])],
        "test_bars": [int(ds.bars[fold.test[0]]), int(ds.bars[fold.test[-1]])],
        "model": classification_report(sf.y, sf.model, threshold),
        "logreg": classification_report(sf.y, sf.logreg, 0.5),
        "prior": classification_report(sf.y, sf.prior, 0.5),
    }


def _pooled(res: StageResult, threshold: float) -> dict[str, object]:
    y = np.concatenate(res.y)
    return {
        "folds": res.folds,
        "overall": {
            "model": classification_report(y, np.concatenate(res.model), threshold),
            "logreg": classification_report(y, np.concatenate(res.logreg), 0.5),
            "prior": classification_report(y, np.concatenate(res.prior), 0.5),
        },
        "scores": {
            "y": y.astype(int).tolist(),
            "model": [round(float(v), 5) for v in np.concatenate(res.model)],
        },
    }
