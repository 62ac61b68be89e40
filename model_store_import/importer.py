"""Write one model version (both stages) into the BentoML model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np

from aifx.calibration import Calibration
from aifx.candles import Candles
from aifx.drift import Reference, build_reference
from aifx.drift_calibration import calibrate
from aifx.versions import (
    CALIBRATION_FILE,
    CHECKSUMS_KEY,
    DRIFT_FILE,
    LITE_FILE,
    MODEL_FILE,
    SCALER_FILE,
    Scaler,
    VersionSpec,
    check_scaler,
    model_name,
    sha256_hex,
)
from model_store_import.lite import keras_to_tflite

ARTIFACT_METADATA = "metadata.json"
ARTIFACT_CALIBRATION = "stage{stage}.calibration.json"  # training output; calibration.json in each stage's store folder


def write_version(
    spec: VersionSpec,
    scaler: Scaler,
    stage_files: dict[int, Path],
    extra: dict[str, Any] | None = None,
    reference: Reference | None = None,
    calibrations: dict[int, Calibration] | None = None,
) -> dict[int, str]:
    """Create a store entry per stage (Stage 2 optional); returns stage -> tag.

    Each stage's metadata records the sha256 of the files written (`checksums`), which the stage
    services verify before loading the model. `reference` (the training rows' drift reference,
    aifx/drift.py) is written beside Stage 1's scaler as `drift.json`; without one the version
    exports no drift. `calibrations` (stage -> map, aifx/calibration.py) go into each stage's folder as
    `calibration.json`; a stage without one serves its raw probabilities. Stage metadata `calibration` is
    that stage's block of `extra["calibration"]` (training's {"stage1": ..., "stage2": ...}).
    """
    if 1 not in stage_files:
        raise ValueError(f"{spec.version}: a version needs a Stage 1 model")
    try:
        check_scaler(scaler, spec)
    except ValueError as exc:
        raise ValueError(f"{spec.version}: {exc}") from exc
    if reference is not None and reference.features != spec.features:
        raise ValueError(f"{spec.version}: the drift reference's features differ from the version's")
    unknown = sorted(set(calibrations or {}) - set(stage_files))
    if unknown:
        raise ValueError(f"{spec.version}: calibration maps for stages without a model: {unknown}")
    meta = {**spec.to_metadata(), **(extra or {})}
    meta["stages"] = sorted(stage_files)
    scaler_bytes = json.dumps(scaler.to_json()).encode()
    tags = {}
    for stage, src in sorted(stage_files.items()):
        files = {MODEL_FILE: Path(src).read_bytes(), LITE_FILE: keras_to_tflite(Path(src)), SCALER_FILE: scaler_bytes}
        if stage == 1 and reference is not None:
            files[DRIFT_FILE] = json.dumps(reference.to_json()).encode()
        if calibrations and stage in calibrations:
            files[CALIBRATION_FILE] = json.dumps(calibrations[stage].to_json()).encode()
        labels = {"project": "aifx", "version": spec.version, "stage": str(stage)}
        stage_meta = {
            **{k: v for k, v in meta.items() if k != "calibration"},
            **_stage_calibration(meta, stage),
            "stage": stage,
            "metrics": _stage_metrics(meta, stage),
            CHECKSUMS_KEY: {name: sha256_hex(data) for name, data in files.items()},
        }
        with bentoml.models.create(model_name(spec.version, stage), labels=labels, metadata=stage_meta) as m:
            for name, data in files.items():
                (Path(m.path) / name).write_bytes(data)
        tags[stage] = str(m.tag)
    return tags


def _stage_calibration(meta: dict[str, Any], stage: int) -> dict[str, Any]:
    """{"calibration": this stage's block} of training's per-stage calibration metadata, or nothing."""
    block = (meta.get("calibration") or {}).get(f"stage{stage}")
    return {"calibration": block} if block else {}


def _stage_metrics(meta: dict[str, Any], stage: int) -> dict[str, Any]:
    """The evaluation block for one stage, plus the two-stage backtest."""
    metrics = meta.get("metrics") or {}
    out = dict(metrics.get(f"stage{stage}", {}))
    if isinstance(out.get("calibration"), dict):
        # Reliability bins are for the report (read from the artifacts) and hold nulls for empty bins,
        # which BentoML's metadata refuses.
        out["calibration"] = {k: v for k, v in out["calibration"].items() if k != "reliability"}
    if "backtest" in metrics:
        out["backtest"] = metrics["backtest"]
    return out


def import_artifacts(artifact_dir: str | Path) -> dict[int, str]:
    """Import a training CLI output folder (stage1.keras, stage2.keras?, scaler.json, metadata.json, drift.json?,
    stage<n>.calibration.json: folders trained before calibration have none, their stages serve raw outputs)."""
    folder = Path(artifact_dir)
    meta = json.loads((folder / ARTIFACT_METADATA).read_text())
    spec = VersionSpec.from_metadata(meta)
    scaler = Scaler.from_json(json.loads((folder / SCALER_FILE).read_text()))
    stages = {s: folder / f"stage{s}.keras" for s in (1, 2) if (folder / f"stage{s}.keras").is_file()}
    extra = {k: v for k, v in meta.items() if k not in spec.to_metadata()}
    drift = folder / DRIFT_FILE  # folders trained before drift references existed have none
    reference = Reference.from_json(json.loads(drift.read_text())) if drift.is_file() else None
    calibrations = {
        s: Calibration.from_json(json.loads(f.read_text()))
        for s in stages
        if (f := folder / ARTIFACT_CALIBRATION.format(stage=s)).is_file()
    }
    return write_version(spec, scaler, stages, extra, reference, calibrations)


def stage1_reference(
    candles: Candles, spec: VersionSpec, scaler: Scaler, stage1: Any, stage1_source: str = ""
) -> Reference:
    """The drift reference of a Keras Stage 1 model over candles, with its alert thresholds calibrated on them
    (aifx.drift.calibrate): the last row of every training-style window (aifx.features.sample_windows, as
    served) and the model's probability on it. `stage1_source` says whether the candles are new to the model."""
    from aifx.features import sample_windows

    x, _ = sample_windows(candles, spec.features, spec.window)
    probs = stage1.predict(scaler.transform(x).astype(np.float32), batch_size=1024, verbose=0).reshape(-1)
    reference = build_reference(spec.features, x[:, -1, :], probs, stage1_source=stage1_source)
    return calibrate(reference, np.column_stack([x[:, -1, :], probs]))
