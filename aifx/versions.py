"""What a model version is: its features, window, threshold and label scheme.

The store contract (written by model_store_import, read by the services):
- model `aifx-<version>-stage1` and, when trained, `aifx-<version>-stage2`
  (labels: project=aifx, version=<version>, stage=1|2);
- each holds `model.keras`, its TFLite conversion `model.tflite` (what the services run)
  and `scaler.json` ({"features", "mean", "scale"});
- stage 1 metadata is `VersionSpec.to_metadata()` plus training data range and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aifx.features import FEATURE_SETS, min_candles

KNOWN_VERSIONS = ("v3.0", "v3.1")
DISPLAY_NAMES = {"v3.0": "Swing Point Detector", "v3.1": "Profitable Reversal Detector"}
MODEL_FILE = "model.keras"
LITE_FILE = "model.tflite"
SCALER_FILE = "scaler.json"


def model_name(version: str, stage: int) -> str:
    """BentoML store name of one stage of a version."""
    return f"aifx-{version}-stage{stage}"


@dataclass(frozen=True)
class Scaler:
    """Standard scaler as plain numbers; travels with the model as JSON."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Scale (..., features) rows."""
        return (x - self.mean) / self.scale

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scaler:
        scale = np.asarray(data["scale"], dtype=np.float64)
        scale = np.where(scale == 0, 1.0, scale)  # a constant feature stays unscaled
        return cls(tuple(data["features"]), np.asarray(data["mean"], dtype=np.float64), scale)

    @classmethod
    def fit(cls, features: tuple[str, ...], rows: np.ndarray) -> Scaler:
        """Fit on (n, features) rows."""
        return cls.from_json({"features": features, "mean": rows.mean(axis=0), "scale": rows.std(axis=0)})


@dataclass(frozen=True)
class VersionSpec:
    """Everything the service needs to turn candles into a prediction for a version."""

    version: str
    features: tuple[str, ...]
    window: int
    threshold: float = 0.5
    label_params: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def min_candles(self) -> int:
        return min_candles(self.features, self.window)

    def to_metadata(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name or DISPLAY_NAMES.get(self.version, self.version),
            "features": list(self.features),
            "window": self.window,
            "min_candles": self.min_candles,
            "threshold": self.threshold,
            "label_params": self.label_params,
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> VersionSpec:
        return cls(
            version=str(meta["version"]),
            features=tuple(meta["features"]),
            window=int(meta["window"]),
            threshold=float(meta.get("threshold", 0.5)),
            label_params=dict(meta.get("label_params", {})),
            name=str(meta.get("name", "")),
        )


def default_spec(version: str, window: int = 20) -> VersionSpec:
    """The built-in feature set and labels for v3.0 / v3.1."""
    from aifx.labels import BarrierParams, SwingParams

    if version not in FEATURE_SETS:
        raise KeyError(f"unknown version {version!r}; built-in versions: {', '.join(FEATURE_SETS)}")
    params = SwingParams() if version == "v3.0" else BarrierParams()
    return VersionSpec(version, FEATURE_SETS[version], window, 0.5, params.to_dict(), DISPLAY_NAMES[version])
