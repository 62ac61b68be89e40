"""Train both stages of a version, evaluate walk-forward, write the artifact folder."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aifx.calibration import IDENTITY_MAP, Calibration
from aifx.candles import Candles
from aifx.domain import BUNDLED_DATA_DOMAIN, Domain
from aifx.drift import Reference, build_reference
from aifx.drift_calibration import calibrate
from aifx.versions import DRIFT_FILE, SCALER_FILE, Scaler, VersionSpec
from model_store_import.importer import ARTIFACT_CALIBRATION, ARTIFACT_METADATA
from training import calibration as cal
from training.dataset import Dataset, build_dataset
from training.evaluate import Log, calibration_split, evaluate, walk_forward_folds
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


@dataclass(frozen=True)
class FinalStage:
    """A served stage: its network and its calibration map."""

    model: Any
    calibration: Calibration


def _evaluated(metrics: dict[str, object], stage: int) -> dict[str, Any] | None:
    """The walk-forward's calibration block of a stage (None without an evaluation)."""
    return metrics[f"stage{stage}"]["calibration"] if metrics else None  # type: ignore[index]


def _validation_brier(evaluated: dict[str, Any] | None) -> dict[str, float] | None:
    """Pooled calibration-block Brier score before and after calibration, from the walk-forward."""
    if not evaluated:
        return None
    v = evaluated["validation"]
    return {"before": v["brier_before"], "after": v["brier_after"]}


def _final_stage(
    ds: Dataset,
    spec: VersionSpec,
    scaler: Scaler,
    rows: np.ndarray,
    y: np.ndarray,
    evaluated: dict[str, Any] | None,
    seed: int,
    epochs: int,
) -> tuple[FinalStage, dict[str, object]]:
    """The served network and map of one stage, by the procedure every fold used, and its metadata block.

    With calibration kept, the network fits all but the last CAL_SHARE of the rows (purged by the label
    horizon) and the map is chosen and fitted on the network's own outputs there: pooled out-of-fold
    outputs would come from other, smaller networks than the served one. Without it, the network fits
    every row and the map is the identity.
    """
    kept = bool(evaluated and evaluated["kept"])
    fit_rows, calib = calibration_split(ds.bars, rows, ds.horizon) if kept else (rows, rows[:0])
    model = fit(scaler.transform(ds.x[fit_rows]), y[fit_rows], seed, epochs, verbose=2, architecture=spec.architecture,
                size=spec.model_size)  # fmt: skip
    choice = cal.choose(predict_proba(model, scaler.transform(ds.x[calib])), y[calib]) if kept else None
    calibration = choice.calibration if choice else IDENTITY_MAP
    block: dict[str, object] = {
        "method": calibration.method,
        "kept": kept,
        "brier_validation": _validation_brier(evaluated),
        "fit_rows": int(len(fit_rows)),
        "calibration_rows": int(len(calib)),
    }
    return FinalStage(model, calibration), block


def drift_reference(
    ds: Dataset, spec: VersionSpec, scaler: Scaler, stage1: FinalStage, scores: dict[str, Any], folds: int, log: Log
) -> Reference:
    """The input drift reference (aifx/drift.py) with its calibrated alert thresholds.

    Features: the unscaled features of each training sample's own bar (the window's last row, what serving
    appends per prediction). Stage 1: out-of-sample probabilities as served, i.e. the walk-forward test folds'
    (each from a network that never saw the fold, through its calibration map; NaN before the first test
    fold), since the final network is more confident on its own training rows than on new bars. Without a
    walk-forward (folds=0) there are none, and the final network's in-sample outputs stand in (said in the
    reference and the log). Thresholds are calibrated on contiguous windows of these time-ordered rows.
    """
    if folds and "stage1" in scores:
        p1 = np.full(len(ds.y1), np.nan)
        test = np.concatenate([f.test for f in walk_forward_folds(ds.bars, folds, ds.horizon)])
        p1[test] = np.asarray(scores["stage1"]["model"], dtype=np.float64)
        source = f"out-of-sample: the {folds} walk-forward test folds' calibrated probabilities ({len(test)} rows)"
    else:
        p1 = stage1.calibration(predict_proba(stage1.model, scaler.transform(ds.x)))
        source = "in-sample: the final Stage 1 on its own training rows (no walk-forward)"
        log(f"[{spec.version}] drift reference: Stage 1 bins in-sample (no walk-forward folds to take them from)")
    reference = build_reference(spec.features, ds.x[:, -1, :], p1, stage1_source=source)
    reference = calibrate(reference, np.column_stack([ds.x[:, -1, :], p1]))
    if reference.thresholds is None:
        log(f"[{spec.version}] drift reference: too few rows to calibrate alert thresholds (the fixed PSI applies)")
    return reference


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
    domain: Domain = BUNDLED_DATA_DOMAIN,
) -> dict[str, object]:
    """Evaluate walk-forward, then fit the served models and their calibration maps; returns the metadata."""
    start = time.monotonic()
    ds = build_dataset(candles, spec)
    log(f"[{spec.version}] {len(ds.y1)} samples, stage-1 base rate {ds.y1.mean():.3f}, {folds} folds")
    metrics = evaluate(ds, candles, spec, folds, epochs, seed, log) if folds else {}
    out.mkdir(parents=True, exist_ok=True)
    scores = _split_scores(metrics)
    (out / SCORES_FILE).write_text(json.dumps(scores))
    if metrics:  # the threshold chosen in the walk-forward on calibration blocks is the served one
        spec = replace(spec, threshold=float(metrics["stage1"]["threshold"]["value"]))  # type: ignore[index]
    scaler = Scaler.fit(spec.features, ds.x.reshape(-1, ds.x.shape[2]))
    log(f"[{spec.version}] final Stage 1 on {len(ds.y1)} samples")
    stage1, cal1 = _final_stage(ds, spec, scaler, np.arange(len(ds.y1)), ds.y1, _evaluated(metrics, 1), seed, epochs)
    stage1.model.save(out / "stage1.keras")
    reference = drift_reference(ds, spec, scaler, stage1, scores, folds, log)
    (out / DRIFT_FILE).write_text(json.dumps(reference.to_json()))
    pos = np.flatnonzero((ds.y1 == 1) & ~np.isnan(ds.y2))
    log(f"[{spec.version}] final Stage 2 on {len(pos)} Stage-1 positives")
    stage2, cal2 = _final_stage(ds, spec, scaler, pos, np.nan_to_num(ds.y2), _evaluated(metrics, 2), seed + 1, epochs)
    stage2.model.save(out / "stage2.keras")
    (out / SCALER_FILE).write_text(json.dumps(scaler.to_json()))
    for stage, final in ((1, stage1), (2, stage2)):
        (out / ARTIFACT_CALIBRATION.format(stage=stage)).write_text(json.dumps(final.calibration.to_json()))
    meta = {
        **spec.to_metadata(),
        "calibration": {"stage1": cal1, "stage2": cal2},
        "training_data": data,
        "domain": domain.to_metadata(),  # pairs and timeframes of the candles (aifx/domain.py)
        "training": {"seed": seed, "epochs": epochs, "samples": int(len(ds.y1)), "parameters": {
            "stage1": int(stage1.model.count_params()), "stage2": int(stage2.model.count_params())}},
        "metrics": metrics,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_seconds": round(time.monotonic() - start, 1),
    }  # fmt: skip
    (out / ARTIFACT_METADATA).write_text(json.dumps(meta, indent=1))
    log(f"[{spec.version}] done in {meta['train_seconds']}s -> {out}")
    return meta
