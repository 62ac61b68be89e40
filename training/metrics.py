"""Classification metrics with their base rate, for one split."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support


def classification_report(y: np.ndarray, score: np.ndarray, threshold: float | np.ndarray) -> dict[str, float | int]:
    """Base rate, precision, recall, F1, PR-AUC, lift and the confusion counts (threshold: one, or one per sample)."""
    y = y.astype(int)
    pred = (score >= threshold).astype(int)
    base = float(y.mean()) if len(y) else 0.0
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    both = len(np.unique(y)) == 2
    pr_auc = float(average_precision_score(y, score)) if both else float("nan")
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return {
        "n": int(len(y)),
        "base_rate": round(base, 6),
        "precision": round(float(p), 6),
        "recall": round(float(r), 6),
        "f1": round(float(f), 6),
        "pr_auc": round(pr_auc, 6) if both else None,  # type: ignore[dict-item]
        "lift": round(float(p) / base, 6) if base > 0 else None,  # type: ignore[dict-item]
        "predicted_positive_rate": round(float(pred.mean()) if len(pred) else 0.0, 6),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
    }
