"""Import the seed's model folders (.h5 models, pickled scaler, JSON feature list)."""

from __future__ import annotations

import json
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np

from aifx.features import FEATURES
from aifx.versions import Scaler, VersionSpec
from model_store_import.importer import stage1_reference, write_version

SEED_FILES = {
    "stage1": "reversal_detector_stage1.h5",
    "stage2": "direction_classifier_stage2.h5",
    "scaler": "feature_scaler.pkl",
    "features": "selected_features.json",
    "metadata": "stage1_metadata.json",
}
# The seed's models were trained on the bundled EUR/USD 1h candles: the drift reference is computed on them.
REFERENCE_CSV = Path(__file__).resolve().parent.parent / "data" / "FOREX_EURUSD_1H_ASK.csv"


def import_seed_folder(
    folder: str | Path, version: str, prefix: str = "", reference_csv: str | Path | None = REFERENCE_CSV
) -> dict[int, str]:
    """Convert a seed folder (e.g. prefix 'profitable_' for v3.1) into store entries.

    The seed holds no training rows, so the drift reference (aifx/drift.py) is the seed Stage 1 model
    over the candles of `reference_csv` (default: the bundled data it was trained on; None: no reference),
    with alert thresholds calibrated on them. The seed's Stage 1 probabilities there are in-sample (no rows
    the seed model never saw exist), which the reference records in `stage1_source`.
    """
    import keras

    folder = Path(folder)
    paths = {k: folder / f"{prefix}{name}" for k, name in SEED_FILES.items()}
    for key in ("stage1", "scaler", "features"):
        if not paths[key].is_file():
            raise FileNotFoundError(f"seed folder {folder} lacks {paths[key].name}")
    features = _feature_list(paths["features"])
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"{paths['features'].name}: features not in aifx.features: {', '.join(unknown)}")
    scaler = _scaler_from_pickle(paths["scaler"], features)
    meta = json.loads(paths["metadata"].read_text()) if paths["metadata"].is_file() else {}
    stage1 = keras.models.load_model(paths["stage1"], compile=False)
    window = int(stage1.input_shape[1]) if len(stage1.input_shape) == 3 else 1
    spec = VersionSpec(version, features, window, float(meta.get("threshold", 0.5)), {"scheme": "seed"})
    with tempfile.TemporaryDirectory() as tmp:
        stage_files = {1: _to_keras(stage1, Path(tmp) / "stage1.keras")}
        if paths["stage2"].is_file():
            stage2 = keras.models.load_model(paths["stage2"], compile=False)
            stage_files[2] = _to_keras(stage2, Path(tmp) / "stage2.keras")
        extra = {"source": f"seed folder {folder.name} ({prefix or 'no prefix'})", "seed_metadata": meta}
        reference = None
        if reference_csv is not None:
            from training.candles_csv import load_candles_csv

            source = f"in-sample: the seed model over {Path(reference_csv).name}, the candles it was trained on"
            reference = stage1_reference(load_candles_csv(reference_csv), spec, scaler, stage1, source)
            extra["drift_reference"] = {"source": Path(reference_csv).name, "rows": reference.rows}
        return write_version(spec, scaler, stage_files, extra, reference)


def _feature_list(path: Path) -> tuple[str, ...]:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data.get("features") or data.get("selected_features")
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise ValueError(f"{path.name}: expected a JSON list of feature names")
    return tuple(data)


def _scaler_from_pickle(path: Path, features: tuple[str, ...]) -> Scaler:
    """Unpickle a scikit-learn scaler once, at import time, and keep only its numbers."""
    warnings.warn(
        f"unpickling {path.name}: pickles run code when loaded; import only files you trust",
        stacklevel=2,
    )
    with path.open("rb") as fh:
        scaler = pickle.load(fh)  # noqa: S301 - trusted, explicit import step
    mean = np.asarray(getattr(scaler, "mean_", np.zeros(len(features))), dtype=np.float64)
    scale = np.asarray(getattr(scaler, "scale_", np.ones(len(features))), dtype=np.float64)
    if mean.shape != (len(features),):
        raise ValueError(f"{path.name}: scaler has {mean.shape[0]} features, feature list has {len(features)}")
    return Scaler(features, mean, scale)


def _to_keras(model: object, dest: Path) -> Path:
    model.save(dest)  # type: ignore[attr-defined]
    return dest
