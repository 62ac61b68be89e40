"""What a model version is: its features, window, threshold and label scheme.

The store contract (written by model_store_import, read by the services):
- model `aifx-<version>-stage1` and, when trained, `aifx-<version>-stage2`
  (labels: project=aifx, version=<version>, stage=1|2);
- each holds `model.keras`, its TFLite conversion `model.tflite` (what the services run)
  and `scaler.json` ({"features", "mean", "scale"}); Stage 1 also `drift.json` (the training
  reference of input drift, aifx/drift.py) when the importer had one (older entries have none);
- a stage may hold `calibration.json` (aifx/calibration.py: identity, Platt or isotonic map applied to
  the network's output when serving; its metadata `calibration` says which and why); entries without
  one serve raw probabilities;
- stage 1 metadata is `VersionSpec.to_metadata()` plus training data range and metrics;
- each stage's metadata holds `checksums`: {file name: sha256 hex} of the files above, recorded at
  import and verified when a stage runner loads the model (`verify_checksums`, `check_scaler`).
  Entries imported before checksums existed have none: they load with a warning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

KNOWN_VERSIONS = ("v3.0", "v3.1", "v3.2")
DISPLAY_NAMES = {
    "v3.0": "Swing Point Detector",
    "v3.1": "Profitable Reversal Detector",
    "v3.2": "Transformer Reversal Detector",
}
MODEL_FILE = "model.keras"
LITE_FILE = "model.tflite"
SCALER_FILE = "scaler.json"
CALIBRATION_FILE = "calibration.json"  # each stage: its probability calibration map (aifx/calibration.py)
DRIFT_FILE = "drift.json"  # Stage 1 only: the training reference of input drift (aifx/drift.py), when imported with one
CHECKSUMS_KEY = "checksums"  # stage metadata: {file name: sha256 hex}


class ModelFileError(ValueError):
    """A stored model's files are not what was imported, or its scaler does not fit its version."""


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
    architecture: str = "conv1d"  # the training network (training/model.py); serving runs any as TFLite
    model_size: dict[str, int] = field(default_factory=dict)  # the architecture's size; empty: its defaults

    @cached_property  # read several times per request; the spec is frozen
    def min_candles(self) -> int:
        # Imported here: the stage runners read specs but never compute features, so they load
        # neither TA-Lib nor pandas (~60 MB per stage worker).
        from aifx.features import min_candles

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
            "architecture": self.architecture,
            "model_size": self.model_size,
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
            architecture=str(meta.get("architecture", "conv1d")),  # entries from before v3.2 are all conv1d
            model_size={str(k): int(v) for k, v in (meta.get("model_size") or {}).items()},
        )


def sha256_hex(data: bytes) -> str:
    """The sha256 digest of a file's bytes, as recorded in the store metadata."""
    return hashlib.sha256(data).hexdigest()


def recorded_checksums(meta: Mapping[str, Any]) -> dict[str, str] | None:
    """The checksums recorded at import; None for entries imported before checksums existed."""
    value = meta.get(CHECKSUMS_KEY)
    if value is None:
        return None
    if (
        not isinstance(value, Mapping)
        or not value
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
        or any("/" in k or "\\" in k or k in ("", ".", "..") for k in value)  # file names in the model folder only
    ):
        raise ModelFileError(f"metadata {CHECKSUMS_KEY!r} is not a {{file: sha256}} mapping: {value!r}")
    return dict(value)


def verify_checksums(files: Mapping[str, bytes | None], expected: Mapping[str, str]) -> None:
    """Raise ModelFileError unless every file named in `expected` is present with that sha256.

    `files` maps names to the bytes read (None: the file is missing). Files the service reads
    (model.tflite, scaler.json) must be among the recorded ones.
    """
    unrecorded = sorted({LITE_FILE, SCALER_FILE} - set(expected))
    if unrecorded:
        raise ModelFileError(f"no checksum recorded for {', '.join(unrecorded)}")
    for name, digest in sorted(expected.items()):
        data = files.get(name)
        if data is None:
            raise ModelFileError(f"{name} is missing (checksum recorded at import)")
        actual = sha256_hex(data)
        if actual != digest.lower():
            raise ModelFileError(
                f"{name} checksum mismatch: sha256 {actual[:16]}... != {digest[:16]}... recorded at import"
            )


def check_scaler(scaler: Scaler, spec: VersionSpec) -> None:
    """Raise ModelFileError unless the scaler fits the version: same features in the same order,
    one finite mean and one finite, positive scale per feature."""
    have, want = tuple(scaler.features), tuple(spec.features)
    if have != want:
        if len(have) != len(want):
            why = f"{len(have)} scaler features, {len(want)} in the version"
        else:
            i = next(i for i, (a, b) in enumerate(zip(have, want, strict=True)) if a != b)
            why = f"position {i}: scaler {have[i]!r}, version {want[i]!r}"
        raise ModelFileError(f"scaler features differ from the version's feature list ({why}; order matters)")
    n = len(spec.features)
    for name, values in (("mean", scaler.mean), ("scale", scaler.scale)):
        if values.shape != (n,):
            raise ModelFileError(f"scaler {name} has shape {values.shape}, expected ({n},) for {n} features")
        if not np.isfinite(values).all():
            raise ModelFileError(f"scaler {name} has non-finite values")
    if (scaler.scale <= 0).any():
        raise ModelFileError("scaler scale has non-positive values")


def default_spec(version: str, window: int = 20) -> VersionSpec:
    """The built-in feature set, labels and network of v3.0 / v3.1 / v3.2 (v3.2: v3.1's labels, a Transformer)."""
    from aifx.features import FEATURE_SETS
    from aifx.labels import BarrierParams, SwingParams

    if version not in FEATURE_SETS:
        raise KeyError(f"unknown version {version!r}; built-in versions: {', '.join(FEATURE_SETS)}")
    params = SwingParams() if version == "v3.0" else BarrierParams()
    architecture = "transformer" if version == "v3.2" else "conv1d"
    name = DISPLAY_NAMES[version]
    return VersionSpec(version, FEATURE_SETS[version], window, 0.5, params.to_dict(), name, architecture=architecture)
