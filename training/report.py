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
    blocks = [(_fold_label(f), f) for f in stage["folds"]]
    blocks.append(("**overall (pooled test folds)**", stage["overall"]))
    for label, block in blocks:
        for clf in ("model", "logreg", "prior"):
            rows.append(f"| {label} | {clf} | " + " | ".join(_fmt(block[clf].get(c)) for c in COLUMNS) + " |")
    return rows


def _fold_label(f: dict[str, Any]) -> str:
    thr = f", threshold {f['threshold']:g}" if "threshold" in f else ""
    return f"fold {f['fold']} (test bars {f['test_bars'][0]}-{f['test_bars'][1]}{thr})"


def calibration_table(meta: dict[str, Any]) -> list[str]:
    """Brier score and ECE on the pooled test folds before and after calibration, per stage, with the decision."""
    head = (
        "| stage | test base rate | served map | kept | validation Brier before -> after | test Brier before | "
        "test Brier after | test ECE before | test ECE after | map per fold |"
    )
    rows = [head, "|" + "---|" * 10]
    for stage in ("stage1", "stage2"):
        c = meta["metrics"][stage]["calibration"]
        served = (meta.get("calibration") or {}).get(stage) or {}
        v, t = c["validation"], c["test"]
        cells = [
            stage, _fmt(t["base_rate"]), served.get("method", "n/a"), "yes" if c["kept"] else "no",
            f"{v['brier_before']:.4f} -> {v['brier_after']:.4f}", f"{t['before']['brier']:.4f}",
            f"{t['after']['brier']:.4f}", f"{t['before']['ece']:.4f}", f"{t['after']['ece']:.4f}",
            ", ".join(c["fold_methods"]),
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def threshold_lines(meta: dict[str, Any]) -> list[str]:
    """The served Stage 1 threshold, its objective and how often the per-fold thresholds fired on the test folds."""
    t = meta["metrics"]["stage1"]["threshold"]
    base = meta["metrics"]["stage1"]["calibration"]["test"]["base_rate"]
    per_fold = ", ".join(f"{v:g}" for v in t["per_fold"])
    return [
        f"Stage 1 threshold **{t['value']:g}** (served), chosen by {t['objective']} (MCC {t['validation_mcc']:.3f}, "
        f"all folds' calibration blocks pooled). Each fold's test metrics use its own block's choice ({per_fold}); "
        f"Stage 1 fired on {_fmt(t['firing_rate_test'])} of the test-fold bars at a base rate of {_fmt(base)}.",
    ]


def plot_reliability(version: str, meta: dict[str, Any], img: Path) -> str:
    """Reliability diagrams (pooled test folds, 10 bins) of both stages before and after calibration."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for stage, ax in zip(("stage1", "stage2"), axes, strict=True):
        c = meta["metrics"][stage]["calibration"]
        for when, style in (("before", "o--"), ("after", "s-")):
            r = c["reliability"][when]
            pts = [(p, o) for p, o in zip(r["mean_prob"], r["outcome_rate"], strict=True) if p is not None]
            brier = c["test"][when]["brier"]
            ax.plot([p for p, _ in pts], [o for _, o in pts], style, label=f"{when} (Brier {brier:.4f})")
        ax.plot([0, 1], [0, 1], c="grey", lw=0.8, label="perfect")
        kept = "kept" if c["kept"] else "not kept"
        ax.set(title=f"{version} {stage} reliability (test folds; {kept})", xlabel="mean predicted probability",
               ylabel="observed rate", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
        ax.legend()
    fig.tight_layout()
    path = img / f"{version}_reliability.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path.name


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


def calibration_section(version: str, meta: dict[str, Any], img: Path) -> list[str]:
    """Calibration before/after, the threshold and the reliability diagrams; nothing for artifacts trained before."""
    if "calibration" not in meta["metrics"].get("stage1", {}):
        return []
    name = plot_reliability(version, meta, img)
    return [
        "### Calibration and the Stage 1 threshold",
        "",
        *threshold_lines(meta),
        "",
        *calibration_table(meta),
        "",
        f"![{name}](img/{name})",
        "",
    ]


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
        *calibration_section(version, meta, out / "img"),
        *[f"![{name}](img/{name})" for name in images],
        "",
    ]
    return lines


def summary_table(metas: list[dict[str, Any]]) -> list[str]:
    """Every version beside the baselines on the pooled test folds: the numbers behind "does it beat them"."""
    head = (
        "| version | architecture | parameters per stage | Stage 1 base rate | Stage 1 PR-AUC model / logreg / prior "
        "| Stage 1 test Brier (served) | Stage 2 base rate | Stage 2 PR-AUC model / logreg / prior "
        "| backtest mean pips at 1 pip cost (trades) |"
    )
    rows = [head, "|" + "---|" * 9]
    for meta in metas:
        m = meta["metrics"]
        s1, s2 = m["stage1"]["overall"], m["stage2"]["overall"]
        cal = m["stage1"].get("calibration", {}).get("test", {})
        brier = cal.get("after" if m["stage1"].get("calibration", {}).get("kept") else "before", {}).get("brier")
        cost1 = next(c for c in m["backtest"]["costs"] if c["cost_pips"] == 1.0)
        auc = "{:.3f} / {:.3f} / {:.3f}"
        rows.append(
            f"| {meta['version']} | {meta.get('architecture', 'conv1d')} | {meta['training']['parameters']['stage1']} "
            f"| {_fmt(s1['model']['base_rate'])} "
            f"| {auc.format(s1['model']['pr_auc'], s1['logreg']['pr_auc'], s1['prior']['pr_auc'])} | {_fmt(brier)} "
            f"| {_fmt(s2['model']['base_rate'])} "
            f"| {auc.format(s2['model']['pr_auc'], s2['logreg']['pr_auc'], s2['prior']['pr_auc'])} "
            f"| {_fmt(cost1['mean_pips'])} ({cost1['trades']}) |"
        )
    return ["## Summary (pooled test folds)", "", *rows, "", *verdicts(metas), ""]


def verdicts(metas: list[dict[str, Any]]) -> list[str]:
    """One generated line per stage: which classifier has the best pooled PR-AUC among versions on v3.1's labels."""
    labels = next((m["label_params"] for m in metas if m["version"] == "v3.1"), None)
    same = [m for m in metas if m["label_params"] == labels]
    if len(same) < 2:
        return []
    out = []
    for stage in ("stage1", "stage2"):
        scores = {m["version"]: m["metrics"][stage]["overall"]["model"]["pr_auc"] for m in same}
        best = max(scores, key=lambda v: scores[v])
        logreg = next(m for m in same if m["version"] == best)["metrics"][stage]["overall"]["logreg"]["pr_auc"]
        figures = ", ".join(f"{v} {scores[v]:.3f}" for v in scores)
        beats = "beats" if scores[best] > logreg else "does not beat"
        out.append(
            f"- {stage.replace('stage', 'Stage ')} on the same labels ({', '.join(scores)}): PR-AUC {figures}; "
            f"the best, {best}, {beats} logistic regression on its own features ({logreg:.3f})."
        )
    return out


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
        "Calibration: the last quarter of each fold's training samples (purged by the label horizon) is held",
        "out of the network's fit; Platt and isotonic maps are compared on it by cross-fitting (each half mapped",
        "by the map fitted on the other) and the lower Brier score wins, identity unless one lowers it. A stage",
        "keeps calibration only where the folds' maps lower the Brier score on those blocks pooled; the `model`",
        "rows are then calibrated probabilities, and Stage 1's threshold is chosen on those blocks too. Test",
        "folds take part in no choice. ECE = expected calibration error over 10 equal-width bins.",
        "",
    ]
    folders = sorted(p for p in args.artifacts.iterdir() if (p / "metadata.json").is_file())
    lines += summary_table([json.loads((f / "metadata.json").read_text()) for f in folders])
    for folder in folders:
        lines += version_section(folder, args.out)
    (args.out / "evaluation.md").write_text("\n".join(lines))
    print(f"wrote {args.out / 'evaluation.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
