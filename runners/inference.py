"""Model loading and compiled inference shared by the two stage services.

TensorFlow is imported here only, so the entry service (which never runs a model)
does not pay for it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from bentoml.validators import ContentType

from aifx.api.schemas import StageWindow
from aifx.versions import MODEL_FILE, SCALER_FILE, Scaler, VersionSpec, model_name

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logger = logging.getLogger("bentoml.aifx.runners")
# Callers keep their connection pool: BentoML's default refresh (every 100 requests) closes
# the pool under requests still in flight, which then fail with ServerDisconnectedError.
KEEP_CONNECTIONS = {"max_requests": 1_000_000_000, "max_age": 86_400.0}
# BentoML samples no traces by default, yet its OpenTelemetry middleware still costs ~18 % of
# the entry's CPU building span attributes. Excluded URLs skip it; configure tracing
# (sample_rate, exporter, excluded_urls) in BENTOML_CONFIG to turn it back on.
NO_TRACING: dict[str, Any] = {"excluded_urls": [".*"]}
# Stage services are internal hops: access logs and BentoML's request metrics cost more CPU
# per call than the model does; the entry service logs and measures every client request.
STAGE_SERVICE_CONFIG: dict[str, Any] = {
    "workers": 1,
    "traffic": {"timeout": 30, "max_concurrency": 512},
    "runner_connection": KEEP_CONNECTIONS,
    "logging": {"access": {"enabled": False}},
    "metrics": {"enabled": False},
    "tracing": NO_TRACING,
}
# A declared media type spares BentoML rebuilding the output's JSON schema on every response.
Probabilities = Annotated[list[float], ContentType("application/json")]


class CompiledModel:
    """A Keras model behind a tf.function with a fixed (None, window, features) float32 signature."""

    def __init__(self, path: Path, scaler: Scaler, spec: VersionSpec) -> None:
        import keras
        import tensorflow as tf

        self.scaler = scaler
        self.shape = (spec.window, len(spec.features))
        self.model = keras.models.load_model(path, compile=False)
        expected = (None, *self.shape)
        if tuple(self.model.input_shape) != expected:
            raise ValueError(f"model input shape {self.model.input_shape} does not match {expected}")
        signature = [tf.TensorSpec(shape=expected, dtype=tf.float32)]
        self._fn = tf.function(self._forward, input_signature=signature)
        self.params = int(self.model.count_params())
        self(np.zeros((1, *self.shape)))  # trace and warm up

    def _forward(self, x: Any) -> Any:
        return self.model(x, training=False)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """P(class 1) for unscaled (n, window, features) samples."""
        x = self.scaler.transform(rows).astype(np.float32)
        return np.asarray(self._fn(x), dtype=np.float64).reshape(-1)


@dataclass
class StageModels:
    """One stage's models for every configured version, plus what failed to load and why."""

    stage: int
    models: dict[str, CompiledModel] = field(default_factory=dict)
    specs: dict[str, VersionSpec] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, stage: int, versions: Sequence[str], refs: dict[str, Any]) -> StageModels:
        """Load each version's model; a version that fails is recorded, not fatal."""
        _limit_threads()
        out = cls(stage)
        for version in versions:
            ref = refs.get(version)
            if ref is None:
                out.failed[version] = f"{model_name(version, stage)} is not in the model store"
                continue
            try:
                stored = ref.resolve()
                spec = VersionSpec.from_metadata(stored.info.metadata)
                scaler = Scaler.from_json(json.loads(Path(stored.path, SCALER_FILE).read_text()))
                out.models[version] = CompiledModel(Path(stored.path, MODEL_FILE), scaler, spec)
                out.specs[version] = spec
            except Exception as exc:  # noqa: BLE001 - any failure leaves the other versions serving
                out.failed[version] = f"{model_name(version, stage)} failed to load: {exc}"
                logger.exception("stage %s: %s failed to load", stage, version)
        out.log_summary()
        return out

    def log_summary(self) -> None:
        for version, model in self.models.items():
            logger.info("stage %s %s loaded: %s parameters", self.stage, version, f"{model.params:,}")
        for version, reason in self.failed.items():
            logger.warning("stage %s %s NOT loaded: %s", self.stage, version, reason)

    def predict(self, windows: Sequence[StageWindow]) -> list[float]:
        """Probabilities for a batch of windows, one model call per version in the batch."""
        out = np.empty(len(windows), dtype=np.float64)
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(w.version, []).append(i)
        for version, idx in groups.items():
            model = self.models.get(version)
            if model is None:
                raise KeyError(f"stage {self.stage} has no model for version {version!r}")
            out[idx] = model(np.stack([np.asarray(windows[i].rows, dtype=np.float64) for i in idx]))
        return out.tolist()

    def status(self) -> dict[str, Any]:
        return {"stage": self.stage, "loaded": sorted(self.models), "failed": dict(self.failed)}


def _limit_threads() -> None:
    """Small models on few cores: one intra-op thread avoids oversubscription across workers."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this process
        pass


def time_call(model: CompiledModel, n: int = 200) -> float:
    """Median seconds per single-sample call (for the start-up log and tests)."""
    x = np.random.default_rng(0).normal(size=(1, *model.shape))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
