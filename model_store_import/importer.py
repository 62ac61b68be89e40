"""Write one model version (both stages) into the BentoML model store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import bentoml

from aifx.versions import LITE_FILE, MODEL_FILE, SCALER_FILE, Scaler, VersionSpec, model_name
from model_store_import.lite import keras_to_tflite

ARTIFACT_METADATA = "metadata.json"


def write_version(
    spec: VersionSpec,
    scaler: Scaler,
    stage_files: dict[int, Path],
    extra: dict[str, Any] | None = None,
) -> dict[int, str]:
    """Create a store entry per stage (Stage 2 optional); returns stage -> tag."""
    if 1 not in stage_files:
        raise ValueError(f"{spec.version}: a version needs a Stage 1 model")
    if tuple(scaler.features) != tuple(spec.features):
        raise ValueError(f"{spec.version}: scaler features differ from the version's feature list")
    meta = {**spec.to_metadata(), **(extra or {})}
    meta["stages"] = sorted(stage_files)
    tags = {}
    for stage, src in sorted(stage_files.items()):
        labels = {"project": "aifx", "version": spec.version, "stage": str(stage)}
        stage_meta = {**meta, "stage": stage, "metrics": _stage_metrics(meta, stage)}
        with bentoml.models.create(model_name(spec.version, stage), labels=labels, metadata=stage_meta) as m:
            shutil.copyfile(src, Path(m.path) / MODEL_FILE)
            (Path(m.path) / LITE_FILE).write_bytes(keras_to_tflite(Path(src)))
            (Path(m.path) / SCALER_FILE).write_text(json.dumps(scaler.to_json()))
        tags[stage] = str(m.tag)
    return tags


def _stage_metrics(meta: dict[str, Any], stage: int) -> dict[str, Any]:
    """The evaluation block for one stage, plus the two-stage backtest."""
    metrics = meta.get("metrics") or {}
    out = dict(metrics.get(f"stage{stage}", {}))
    if "backtest" in metrics:
        out["backtest"] = metrics["backtest"]
    return out


def import_artifacts(artifact_dir: str | Path) -> dict[int, str]:
    """Import a training CLI output folder (stage1.keras, stage2.keras?, scaler.json, metadata.json)."""
    folder = Path(artifact_dir)
    meta = json.loads((folder / ARTIFACT_METADATA).read_text())
    spec = VersionSpec.from_metadata(meta)
    scaler = Scaler.from_json(json.loads((folder / SCALER_FILE).read_text()))
    stages = {s: folder / f"stage{s}.keras" for s in (1, 2) if (folder / f"stage{s}.keras").is_file()}
    extra = {k: v for k, v in meta.items() if k not in spec.to_metadata()}
    return write_version(spec, scaler, stages, extra)
