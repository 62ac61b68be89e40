"""Train both stages of a version, evaluate walk-forward, write the artifact folder."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from aifx.candles import Candles
from aifx.drift import build_reference
from aifx.versions import DRIFT_FILE, SCALER_FILE, Scaler, VersionSpec
from model_store_import.importer import ARTIFACT_METADATA
from training.dataset import build_dataset
from training.evaluate import Log, evaluate
from training.model import fit, predict_proba

SCORES_FILE = "evaluation_scores.json"


def data_info(path: Path, candles: Candles) -> dict[str, object]:
    """Where the training candles came from, so a version can be traced to its data."""
    return {
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "rows": len(candles),
        "first": str(candles.timestamp[0]),
        "last": str(candles.timestamp[-1]),
    }


def _split_scores(metrics: dict[str, object]) -> dict[str, object]:
    """Move per-sample scores and equity curves out of the metadata (they feed the plots)."""
    scores: dict[str, object] = {k: metrics[k].pop("scores") for k in ("stage1", "stage2") if k in metrics}  # type: ignore[attr-defined]
    if "backtest" in metrics:
        scores["equity"] = {str(c["cost_pips"]): c.pop("equity") for c in metrics["backtest"]["costs"]}  # type: ignore[index]
    return scores


def train_version(
    candles: Candles,
    spec: VersionSpec,
    out: Path,
    *,
    data: dict[str, object],
    folds: int = 5,
    epochs: int = 12,
    seed: int = 42,
    log: Log = print,
) -> dict[str, object]:
    """Evaluate walk-forward, then fit the served models on all samples; returns the metadata."""
    start = time.monotonic()
    ds = build_dataset(candles, spec)
    log(f"[{spec.version}] {len(ds.y1)} samples, stage-1 base rate {ds.y1.mean():.3f}, {folds} folds")
    metrics = evaluate(ds, candles, spec, folds, epochs, seed, log) if folds else {}
    out.mkdir(parents=True, exist_ok=True)
    scores = _split_scores(metrics)
    (out / SCORES_FILE).write_text(json.dumps(scores))
    scaler = Scaler.fit(spec.features, ds.x.reshape(-1, ds.x.shape[2]))
    log(f"[{spec.version}] final Stage 1 on {len(ds.y1)} samples")
    stage1 = fit(scaler.transform(ds.x), ds.y1, seed, epochs, verbose=2)
    stage1.save(out / "stage1.keras")
    # Input drift reference: the unscaled features of each training sample's own bar (the window's last
    # row, what serving appends per prediction) and the final Stage 1's probability on the sample.
    reference = build_reference(spec.features, ds.x[:, -1, :], predict_proba(stage1, scaler.transform(ds.x)))
    (out / DRIFT_FILE).write_text(json.dumps(reference.to_json()))
    pos = (ds.y1 == 1) & ~np.isnan(ds.y2)
    log(f"[{spec.version}] final Stage 2 on {int(pos.sum())} Stage-1 positives")
    stage2 = fit(scaler.transform(ds.x[pos]), ds.y2[pos], seed + 1, epochs, verbose=2)
    stage2.save(out / "stage2.keras")
    (out / SCALER_FILE).write_text(json.dumps(scaler.to_json()))
    meta = {
        **spec.to_metadata(),
        "training_data": data,
        "training": {"seed": seed, "epochs": epochs, "samples": int(len(ds.y1)), "parameters": {
            "stage1": int(stage1.count_params()), "stage2": int(stage2.count_params())}},
        "metrics": metrics,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip
    (out / ARTIFACT_METADATA).write_text(json.dumps(meta, indent=1))
    log(f"[{spec.version}] done in {meta['train_seconds']}s -> {out}")
    return meta
