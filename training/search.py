"""Bounded search of v3.2's Transformer size, nested before the walk-forward test folds (`make search`).

Where: only samples whose labels end before the first walk-forward test block, i.e. fold 1's purged
training part (the first sixth of the data with 5 folds). Every later block is some fold's test block,
so a size chosen on those bars would have seen test data of the folds that report it; the price is
a small search set. How: that region is split walk-forward again (3 inner folds, label horizon
purged); each size is trained on an inner fold's past (2 seeds, the training epochs) and scored by
Stage 1 PR-AUC on the inner fold's validation block; logistic regression on the same blocks is shown
for scale. Choice: the smallest size (in parameters) whose mean PR-AUC is within one standard error
(over inner folds) of the best mean, since differences below that are noise on blocks this small.
Writes training/v32_search.json (committed); `python -m training --version v3.2` trains its size.

Committed run (`python -m training.search`, 8 min 15 s wall on 2 shared cores; 1,014 samples before
the first test block, inner validation blocks of ~254; Stage 1 PR-AUC, mean over 2 seeds):

| size | parameters | inner 1 | inner 2 | inner 3 | mean +/- se |
|---|---|---|---|---|---|
| d16 h2 b1 ff32 (chosen) | 2833 | 0.5347 | 0.7018 | 0.5336 | 0.5900 +/- 0.0559 |
| d16 h4 b1 ff32 | 2833 | 0.5396 | 0.6961 | 0.5193 | 0.5850 +/- 0.0558 |
| d16 h2 b2 ff32 | 5057 | 0.5639 | 0.6432 | 0.5364 | 0.5812 +/- 0.0320 |
| d16 h4 b2 ff32 | 5057 | 0.5561 | 0.6541 | 0.5326 | 0.5809 +/- 0.0372 |
| d32 h2 b1 ff64 | 9761 | 0.5634 | 0.6567 | 0.5253 | 0.5818 +/- 0.0390 |
| d32 h4 b1 ff64 | 9761 | 0.5587 | 0.6406 | 0.5330 | 0.5774 +/- 0.0324 |
| d32 h2 b2 ff64 | 18305 | 0.5640 | 0.6466 | 0.5004 | 0.5703 +/- 0.0423 |
| d32 h4 b2 ff64 | 18305 | 0.5627 | 0.6317 | 0.5214 | 0.5720 +/- 0.0322 |
| logistic regression | | 0.5721 | 0.6343 | 0.5232 | 0.5765 |

Every size is within one standard error of every other: the data before the first test block cannot
tell these sizes apart, and the rule takes the smallest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from aifx.candles import Candles
from aifx.versions import Scaler, VersionSpec, default_spec
from training.candles_csv import load_candles_csv
from training.dataset import Dataset, build_dataset
from training.evaluate import Fold, walk_forward_folds
from training.model import TRANSFORMER_SIZE, build_model, fit, predict_proba

CHOICE_FILE = Path(__file__).resolve().parent / "v32_search.json"
DEFAULT_CSV = Path(__file__).resolve().parent.parent / "data" / "FOREX_EURUSD_1H_ASK.csv"
GRID: tuple[dict[str, int], ...] = tuple(
    {"d_model": d, "heads": h, "blocks": b, "ff": 2 * d} for d in (16, 32) for b in (1, 2) for h in (2, 4)
)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Row:
    """One size's validation scores: per inner fold (mean over seeds), with its cost."""

    size: dict[str, int]
    parameters: int
    pr_auc: list[float]
    seconds: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.pr_auc))

    @property
    def se(self) -> float:
        return float(np.std(self.pr_auc, ddof=1) / np.sqrt(len(self.pr_auc))) if len(self.pr_auc) > 1 else 0.0


def search_region(bars: np.ndarray, folds: int, horizon: int) -> np.ndarray:
    """Sample indices whose labels end before the first walk-forward test block (fold 1's training part)."""
    return walk_forward_folds(bars, folds, horizon)[0].train


def inner_folds(bars: np.ndarray, region: np.ndarray, inner: int, horizon: int) -> list[Fold]:
    """Walk-forward folds inside the region, as sample indices of the whole data set."""
    return [Fold(f.number, region[f.train], region[f.test]) for f in walk_forward_folds(bars[region], inner, horizon)]


def one_se_choice(rows: Sequence[Row]) -> Row:
    """The smallest size whose mean is within one standard error of the best mean."""
    best = max(rows, key=lambda r: r.mean)
    return min((r for r in rows if r.mean >= best.mean - best.se), key=lambda r: (r.parameters, -r.mean))


def label(size: Mapping[str, int]) -> str:
    """A size as a short table label."""
    return f"d{size['d_model']} h{size['heads']} b{size['blocks']} ff{size['ff']}"


def _scaled(ds: Dataset, spec: VersionSpec, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    scaler = Scaler.fit(spec.features, ds.x[fold.train].reshape(-1, ds.x.shape[2]))
    return scaler.transform(ds.x[fold.train]), scaler.transform(ds.x[fold.test])


def _logreg(x_train: np.ndarray, y: np.ndarray, x_val: np.ndarray, seed: int) -> np.ndarray:
    clf = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(x_train.reshape(len(x_train), -1), y.astype(int))
    return clf.predict_proba(x_val.reshape(len(x_val), -1))[:, 1]


def score_size(
    ds: Dataset, spec: VersionSpec, size: dict[str, int], folds: Sequence[Fold], seeds: int, epochs: int, seed: int
) -> Row:
    """Train the size on each inner fold's past with each seed; Stage 1 PR-AUC on its validation block."""
    start = time.monotonic()
    scores = []
    for fold in folds:
        x_train, x_val = _scaled(ds, spec, fold)
        per_seed = []
        for s in range(seeds):
            model = fit(x_train, ds.y1[fold.train], seed + 100 * s + fold.number, epochs, architecture="transformer",
                        size=size)  # fmt: skip
            per_seed.append(average_precision_score(ds.y1[fold.test].astype(int), predict_proba(model, x_val)))
        scores.append(float(np.mean(per_seed)))
    parameters = int(build_model(spec.window, len(spec.features), seed, "transformer", size).count_params())
    return Row(size, parameters, scores, round(time.monotonic() - start, 1))


def run(
    candles: Candles, *, folds: int = 5, inner: int = 3, seeds: int = 2, epochs: int = 12, seed: int = 42,
    grid: Sequence[dict[str, int]] = GRID, log: Log = print,
) -> dict[str, Any]:  # fmt: skip
    """Score every size of the grid; the result (table and choice) as written to the choice file."""
    start = time.monotonic()
    spec = default_spec("v3.2")
    ds = build_dataset(candles, spec)
    region = search_region(ds.bars, folds, ds.horizon)
    splits = inner_folds(ds.bars, region, inner, ds.horizon)
    log(f"[search] {len(region)} of {len(ds.y1)} samples (before the first test block), {inner} inner folds")
    logreg = []
    for fold in splits:
        x_train, x_val = _scaled(ds, spec, fold)
        logreg.append(float(average_precision_score(ds.y1[fold.test].astype(int),
                                                    _logreg(x_train, ds.y1[fold.train], x_val, seed))))  # fmt: skip
    rows = []
    for size in grid:
        rows.append(score_size(ds, replace(spec, model_size=size), size, splits, seeds, epochs, seed))
        r = rows[-1]
        log(f"[search] {label(size)}: PR-AUC {r.mean:.4f} +/- {r.se:.4f} ({r.parameters} parameters, {r.seconds}s)")
    chosen = one_se_choice(rows)
    return {
        "architecture": "transformer",
        "size": chosen.size,
        "rule": "smallest size within one standard error of the best mean Stage 1 PR-AUC",
        "region": {
            "samples": int(len(region)),
            "last_bar": int(ds.bars[region[-1]]),
            "first_test_bar": int(ds.bars[walk_forward_folds(ds.bars, folds, ds.horizon)[0].test[0]]),
            "inner_folds": [
                {
                    "train": int(len(f.train)),
                    "validation": int(len(f.test)),
                    "base_rate": round(float(ds.y1[f.test].mean()), 4),
                }
                for f in splits
            ],
        },
        "settings": {"folds": folds, "inner": inner, "seeds": seeds, "epochs": epochs, "seed": seed},
        "logreg_pr_auc": [round(v, 4) for v in logreg],
        "table": [
            {
                "size": r.size,
                "parameters": r.parameters,
                "pr_auc": [round(v, 4) for v in r.pr_auc],
                "mean": round(r.mean, 4),
                "se": round(r.se, 4),
                "seconds": r.seconds,
            }
            for r in rows
        ],
        "seconds": round(time.monotonic() - start, 1),
    }


def table_text(result: Mapping[str, Any]) -> str:
    """The result as a Markdown table, the chosen size marked."""
    n = len(result["logreg_pr_auc"])
    head = "| size | parameters | " + " | ".join(f"inner fold {i + 1}" for i in range(n)) + " | mean +/- se | seconds |"
    lines = [head, "|" + "---|" * (n + 4)]
    for r in result["table"]:
        mark = " (chosen)" if r["size"] == result["size"] else ""
        folds = " | ".join(f"{v:.4f}" for v in r["pr_auc"])
        lines.append(f"| {label(r['size'])}{mark} | {r['parameters']} | {folds} | {r['mean']:.4f} +/- {r['se']:.4f} "
                     f"| {r['seconds']} |")  # fmt: skip
    lr = result["logreg_pr_auc"]
    lines.append(f"| logistic regression | | {' | '.join(f'{v:.4f}' for v in lr)} | {np.mean(lr):.4f} | |")
    return "\n".join(lines)


def chosen_size(path: Path = CHOICE_FILE) -> dict[str, int]:
    """The size the committed search chose; the model's default size when there is no choice file."""
    if not path.is_file():
        return dict(TRANSFORMER_SIZE)
    return {str(k): int(v) for k, v in json.loads(path.read_text())["size"].items()}


def main(argv: list[str] | None = None) -> int:
    """Run the search on the bundled data and write the choice file."""
    ap = argparse.ArgumentParser(prog="python -m training.search", description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    ap.add_argument("--out", type=Path, default=CHOICE_FILE)
    ap.add_argument("--folds", type=int, default=5, help="the walk-forward folds whose test blocks stay unseen")
    ap.add_argument("--inner", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=12)
    args = ap.parse_args(argv)
    result = run(load_candles_csv(args.csv), folds=args.folds, inner=args.inner, seeds=args.seeds, epochs=args.epochs)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(table_text(result))
    print(f"chosen: {label(result['size'])}; {result['seconds']}s; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
