"""Write one model version (both stages) into the BentoML model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml

from aifx.versions import (
    CHECKSUMS_KEY,
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


def write_version(
    spec: VersionSpec,
    scaler: Scaler,
    stage_files: dict[int, Path],
    extra: dict[str, Any] | None = None,
) -> dict[int, str]:
    """Create a store entry per stage (Stage 2 optional); returns stage -> tag.

    Each stage's metadata records the sha256 of the files written (`checksums`), which the stage
    services verify before loading the model.
    """
    if 1 not in stage_files:
        raise ValueError(f"{spec.version}: a version needs a Stage 1 model")
    try:
        check_scaler(scaler, spec)
    except ValueError as exc:
        raise ValueError(f"{spec.version}: {exc}") from exc
    meta = {**spec.to_metadata(), **(extra or {})}
    meta["stages"] = sorted(stage_files)
    scaler_bytes = json.dumps(scaler.to_json()).encode()
    tags = {}
    for stage, src in sorted(stage_files.items()):
        files = {MODEL_FILE: Path(src).read_bytes(), LITE_FILE: keras_to_tflite(Path(src)), SCALER_FILE: scaler_bytes}
        labels = {"project": "aifx", "version": spec.version, "stage": str(stage)}
        stage_meta = {
            **meta,
            "stage": stage,
            "metrics": _stage_metrics(meta, stage),
            CHECKSUMS_KEY: {name: sha256_hex(data) for name, data in files.items()},
        }
        with bentoml.models.create(model_name(spec.version, stage), labels=labels, metadata=stage_meta) as m:
            for name, data in files.items():
                (Path(m.path) / name).write_bytes(data)
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
