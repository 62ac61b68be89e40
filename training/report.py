"""Markdown report and PNG plots from training artifacts: python -m training.report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from training.train import SCORES_FILE  # noqa: E402

COLUMNS = ("n", "base_rate", "precision", "recall", "f1", "pr_auc", "lift")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def metrics_table(stage: dict[str, Any]) -> list[str]:
    """One row per fold and overall, for the model and both baselines."""
    rows = ["| split | classifier | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    blocks = [(f"fold {f['fold']} (test bars {f['test_bars'][0]}-{f['test_bars'][1]})", f) for f in stage["folds"]]
    blocks.append(("**overall (pooled test folds)**", stage["overall"]))
    for label, block in blocks:
        for clf in ("model", "logreg", "prior"):
            rows.append(f"| {label} | {clf} | " + " | ".join(_fmt(block[clf].get(c)) for c in COLUMNS) + " |")
    return rows


def backtest_table(bt: dict[str, Any]) -> list[str]:
    keys = (
        "cost_pips",
        "trades",
        "longs",
        "shorts",
        "hits",
        "stops",
        "timeouts",
        "take_profit_rate",
        "positive_rate",
        "total_pips",
        "mean_pips",
        "max_drawdown_pips",
    )
    rows = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    rows += ["| " + " | ".join(_fmt(c.get(k)) for k in keys) + " |" for c in bt["costs"]]
    return [f"Rule: {bt['rule']}.", "", *rows]


def plot_version(version: str, meta: dict[str, Any], scores: dict[str, Any], img: Path) -> list[str]:
    """PR curves, confusion matrices and equity curves; returns the image paths."""
    img.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for stage, ax in zip(("stage1", "stage2"), axes[:2], strict=True):
        y, s = np.asarray(scores[stage]["y"]), np.asarray(scores[stage]["model"])
        p, r, _ = precision_recall_curve(y, s)
        ax.plot(r, p, label="model")
        ax.axhline(y.mean(), ls="--", c="grey", label=f"base rate {y.mean():.3f}")
        ax.set(title=f"{version} {stage} PR curve (pooled walk-forward)", xlabel="recall", ylabel="precision")
        ax.legend()
    for cost, eq in scores["equity"].items():
        axes[2].plot(eq, label=f"cost {cost} pips")
    axes[2].set(title=f"{version} two-stage equity (test folds)", xlabel="trade #", ylabel="pips")
    axes[2].legend()
    fig.tight_layout()
    curves = img / f"{version}_curves.png"
    fig.savefig(curves, dpi=80)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for stage, ax in zip(("stage1", "stage2"), axes, strict=True):
        o = meta["metrics"][stage]["overall"]["model"]
        cm = np.array([[o["tn"], o["fp"]], [o["fn"], o["tp"]]])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center")
        ax.set(
            title=f"{version} {stage} confusion",
            xticks=[0, 1],
            yticks=[0, 1],
            xlabel="predicted",
            ylabel="true",
        )
    fig.tight_layout()
    confusion = img / f"{version}_confusion.png"
    fig.savefig(confusion, dpi=80)
    plt.close(fig)
    return [curves.name, confusion.name]


def version_section(folder: Path, out: Path) -> list[str]:
    meta = json.loads((folder / "metadata.json").read_text())
    scores = json.loads((folder / SCORES_FILE).read_text())
    version, m = meta["version"], meta["metrics"]
    images = plot_version(version, meta, scores, out / "img")
    split = m["split"]
    lines = [
        f"## {version} — {meta['name']}",
        "",
        f"Labels: `{json.dumps(meta['label_params'])}`. Features ({len(meta['features'])}): "
        f"{', '.join(meta['features'])}; window {meta['window']}, min candles {meta['min_candles']}.",
        f"Data: {meta['training_data']['file']} ({meta['training_data']['rows']} bars, "
        f"{meta['training_data']['first'][:10]} to {meta['training_data']['last'][:10]}). "
        f"Split: {split['scheme']}, {split['folds']} folds, label horizon purged ({split['purge_bars']} bars), "
        f"{split['test_samples']} of {split['samples']} samples tested. Threshold {meta['threshold']}. "
        f"Seed {meta['training']['seed']}, {meta['training']['epochs']} epochs, "
        f"{meta['training']['parameters']['stage1']} parameters per stage. Trained in {meta['train_seconds']} s.",
        "",
        "### Stage 1 (reversal yes/no)",
        "",
        *metrics_table(m["stage1"]),
        "",
        "### Stage 2 (direction on Stage-1 positives; positive class = long)",
        "",
        *metrics_table(m["stage2"]),
        "",
        "### Backtest of the two-stage signal on the test folds",
        "",
        *backtest_table(m["backtest"]),
        "",
        *[f"![{name}](img/{name})" for name in images],
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Write docs/evaluation.md and its images from artifacts/<version>/."""
    ap = argparse.ArgumentParser(prog="python -m training.report")
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--out", type=Path, default=Path("docs"))
    args = ap.parse_args(argv)
    lines = [
        "# Model evaluation report",
        "",
        "Generated by `make train report` (`python -m training --version V` then `python -m training.report`).",
        "Every figure is out-of-sample: walk-forward, each test block scored by models trained only on",
        "earlier bars, with the label horizon purged. `prior` = random positives at the training base rate;",
        "`logreg` = logistic regression (balanced) on the same scaled windows. `lift` = precision / base rate.",
        "",
    ]
    for folder in sorted(p for p in args.artifacts.iterdir() if (p / "metadata.json").is_file()):
        lines += version_section(folder, args.out)
    (args.out / "evaluation.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'evaluation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
