"""Model loading and inference shared by the two stage services.

The services run each stored model's TensorFlow Lite conversion with LiteRT: TensorFlow
itself is never imported while serving (the conversion runs at import: model_store_import/lite.py).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from bentoml.validators import ContentType

from aifx.versions import (
    LITE_FILE,
    SCALER_FILE,
    ModelFileError,
    Scaler,
    VersionSpec,
    check_scaler,
    model_name,
    recorded_checksums,
    verify_checksums,
)
from aifx.wire import StageBatch

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
# Two workers per stage also where no BENTOML_CONFIG is given (a built Bento's container): a dead
# worker's calls are retried on the other at once instead of waiting for the arbiter's restart.
STAGE_SERVICE_CONFIG: dict[str, Any] = {
    "workers": 2,
    "traffic": {"timeout": 30, "max_concurrency": 512},
    "runner_connection": KEEP_CONNECTIONS,
    "logging": {"access": {"enabled": False}},
    "metrics": {"enabled": False},
    "tracing": NO_TRACING,
}
REIMPORT = "re-import the version with `python -m model_store_import`"
# A declared media type spares BentoML rebuilding the output's JSON schema on every response.
Probabilities = Annotated[list[float], ContentType("application/json")]


class LiteModel:
    """A stage model as a LiteRT (TensorFlow Lite) interpreter with a (n, window, features) float32 input.

    One interpreter per model, called from the service's event loop only (interpreters are not
    thread-safe); the input is resized when the batch size changes (microseconds).
    """

    def __init__(self, flatbuffer: bytes, scaler: Scaler, spec: VersionSpec) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.scaler = scaler
        self.shape = (spec.window, len(spec.features))
        self._interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
        inp = self._interpreter.get_input_details()[0]
        if tuple(inp["shape_signature"][1:]) != self.shape:
            raise ValueError(f"model input shape {tuple(inp['shape_signature'])} does not match (-1, *{self.shape})")
        self._input = inp["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 0
        self.size_bytes = len(flatbuffer)
        self(np.zeros((1, *self.shape)))  # allocate and warm up

    @classmethod
    def from_store(cls, folder: Path, scaler: Scaler, spec: VersionSpec) -> LiteModel:
        """The stored flatbuffer (written at import; serving never converts, so it never imports TensorFlow).

        Unverified: the stage services load through `load_stage_model`, which checks the checksums.
        """
        return cls(_read_lite(folder), scaler, spec)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """P(class 1) for unscaled (n, window, features) samples."""
        x = self.scaler.transform(rows).astype(np.float32)
        it = self._interpreter
        if len(x) != self._batch:
            it.resize_tensor_input(self._input, list(x.shape))
            it.allocate_tensors()
            self._batch = len(x)
        it.set_tensor(self._input, x)
        it.invoke()
        return np.asarray(it.get_tensor(self._output), dtype=np.float64).reshape(-1)


@dataclass
class StageModels:
    """One stage's models for every configured version, plus what failed to load and why."""

    stage: int
    models: dict[str, LiteModel] = field(default_factory=dict)
    specs: dict[str, VersionSpec] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, stage: int, versions: Sequence[str], refs: dict[str, Any]) -> StageModels:
        """Load each version's model; a version that fails is recorded, not fatal."""
        out = cls(stage)
        for version in versions:
            ref = refs.get(version)
            if ref is None:
                out.failed[version] = f"{model_name(version, stage)} is not in the model store"
                continue
            try:
                stored = ref.resolve()
                spec, model = load_stage_model(Path(stored.path), stored.info.metadata, model_name(version, stage))
                out.models[version] = model
                out.specs[version] = spec
            except ModelFileError as exc:  # tampered or mismatched files: refused, the others serve
                out.failed[version] = f"{model_name(version, stage)} failed to load: {exc}"
                logger.error("stage %s: %s refused: %s", stage, version, exc)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the other versions serving
                # /health shows this to anyone: the kind of error and an id, the details only in the log.
                error_id = secrets.token_hex(4)
                out.failed[version] = (
                    f"{model_name(version, stage)} failed to load ({type(exc).__name__}; "
                    f"error id {error_id}: the stage service's log has the details)"
                )
                logger.exception("error %s: stage %s: %s failed to load", error_id, stage, version)
        out.log_summary()
        return out

    def log_summary(self) -> None:
        for version, model in self.models.items():
            logger.info("stage %s %s loaded (LiteRT, %s bytes)", self.stage, version, f"{model.size_bytes:,}")
        for version, reason in self.failed.items():
            logger.warning("stage %s %s NOT loaded: %s", self.stage, version, reason)

    def predict(self, batches: Sequence[StageBatch]) -> list[float]:
        """Probabilities for every window of every batch, in order (one model call per batch)."""
        out: list[float] = []
        for batch in batches:
            model = self.models.get(batch.version)
            if model is None:
                logger.error("stage %s: no model for %r [requests %s]", self.stage, batch.version, _ids(batch))
                raise KeyError(f"stage {self.stage} has no model for version {batch.version!r}")
            try:
                out.extend(model(np.asarray(batch.rows, dtype=np.float64)).tolist())
            except Exception:
                logger.exception("stage %s: %s failed [requests %s]", self.stage, batch.version, _ids(batch))
                raise
        return out

    def status(self) -> dict[str, Any]:
        return {"stage": self.stage, "loaded": sorted(self.models), "failed": dict(self.failed)}


def load_stage_model(folder: Path, meta: Mapping[str, Any], name: str) -> tuple[VersionSpec, LiteModel]:
    """One stored stage model, verified: the files match the sha256 checksums recorded at import, and
    the scaler has the version's features in order with finite numbers (ModelFileError otherwise).

    An entry imported before checksums existed (none in its metadata) loads with a warning.
    """
    spec = VersionSpec.from_metadata(dict(meta))
    checksums = recorded_checksums(meta)
    names = {LITE_FILE, SCALER_FILE} | set(checksums or ())
    files = {n: (folder / n).read_bytes() if (folder / n).is_file() else None for n in sorted(names)}
    if checksums is None:
        logger.warning(
            "%s has no checksums in its metadata (imported before they existed): loading it unverified;"
            " %s to record them",
            name,
            REIMPORT,
        )
    else:
        verify_checksums(files, checksums)
    scaler_bytes, flatbuffer = files[SCALER_FILE], files[LITE_FILE]
    if scaler_bytes is None:
        raise FileNotFoundError(f"{folder} has no {SCALER_FILE}")
    if flatbuffer is None:
        raise FileNotFoundError(f"{folder} has no {LITE_FILE}: {REIMPORT}")
    try:
        scaler = Scaler.from_json(json.loads(scaler_bytes))
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{SCALER_FILE} is not a valid scaler: {exc!r}") from exc
    check_scaler(scaler, spec)
    return spec, LiteModel(flatbuffer, scaler, spec)


def _read_lite(folder: Path) -> bytes:
    lite = folder / LITE_FILE
    if not lite.is_file():
        raise FileNotFoundError(f"{folder} has no {LITE_FILE}: {REIMPORT}")
    return lite.read_bytes()


def _ids(batch: StageBatch) -> str:
    """The entry requests of a batch, for log lines (bounded)."""
    ids = batch.request_ids
    return ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "") if ids else "unknown"
