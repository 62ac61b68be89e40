"""Model loading and inference shared by the two stage runners.

The runners run each stored model's TensorFlow Lite conversion with LiteRT: TensorFlow
itself is never imported while serving (the conversion runs at import: model_store_import/lite.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aifx.calibration import IDENTITY_MAP, Calibration
from aifx.versions import (
    CALIBRATION_FILE,
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logger = logging.getLogger("bentoml.aifx.runners")
REIMPORT = "re-import the version with `python -m model_store_import`"


class LiteModel:
    """A stage model as a LiteRT (TensorFlow Lite) interpreter with a (n, window, features) float32 input.

    One interpreter per model, called from the service's event loop only (interpreters are not
    thread-safe); the input is resized when the batch size changes (microseconds).
    """

    def __init__(
        self, flatbuffer: bytes, scaler: Scaler, spec: VersionSpec, calibration: Calibration = IDENTITY_MAP
    ) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.scaler = scaler
        self.calibration = calibration
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

        Unverified and uncalibrated (raw network outputs, for comparisons with Keras): the stage runners load
        through `load_stage_model`, which checks the checksums and applies the stored calibration map.
        """
        return cls(_read_lite(folder), scaler, spec)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated P(class 1) for unscaled (n, window, features) samples: what every consumer of a stage sees."""
        return self.calibration(self.raw(rows))

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """The network's own P(class 1) for unscaled (n, window, features) samples."""
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
    absent: set[str] = field(default_factory=set)  # configured, not in the store at start: loadable later
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @classmethod
    def load(cls, stage: int, versions: Sequence[str], refs: dict[str, Any]) -> StageModels:
        """Load each version's model; a version that fails is recorded, not fatal."""
        out = cls(stage)
        for version in versions:
            ref = refs.get(version)
            if ref is None:
                out.failed[version] = f"{model_name(version, stage)} is not in the model store"
                out.absent.add(version)
                continue
            loaded = out._attempt(version, ref.resolve)
            if isinstance(loaded, str):
                out.failed[version] = loaded
            else:
                out.specs[version], out.models[version] = loaded
        out.log_summary()
        return out

    def _attempt(self, version: str, resolve: Callable[[], Any]) -> tuple[VersionSpec, LiteModel] | str:
        """One version's verified model, or why it failed to load."""
        name = model_name(version, self.stage)
        try:
            stored = resolve()
            return load_stage_model(Path(stored.path), stored.info.metadata, name)
        except ModelFileError as exc:  # tampered or mismatched files: refused, the others serve
            logger.error("stage %s: %s refused: %s", self.stage, version, exc)
            return f"{name} failed to load: {exc}"
        except Exception as exc:  # noqa: BLE001 - any failure leaves the other versions serving
            # /health shows this to anyone: the kind of error and an id, the details only in the log.
            error_id = secrets.token_hex(4)
            logger.exception("error %s: stage %s: %s failed to load", error_id, self.stage, version)
            return (
                f"{name} failed to load ({type(exc).__name__}; error id {error_id}: the service's log has the details)"
            )

    async def ensure(self, versions: Iterable[str], find: Callable[[str], Any | None]) -> None:
        """Load the named versions that were not in the store at start and are now (`find`: version -> stored
        model or None), off the event loop, one load at a time; requests keep being served meanwhile."""
        versions = list(versions)
        if not self.absent.intersection(versions):
            return
        async with self._lock:
            wanted = [v for v in dict.fromkeys(versions) if v in self.absent]
            if wanted:
                results = await asyncio.to_thread(self._load_found, wanted, find)
                self._apply(results)

    def _load_found(
        self, versions: Sequence[str], find: Callable[[str], Any | None]
    ) -> dict[str, tuple[VersionSpec, LiteModel] | str | None]:
        """Each version's model, why it failed, or None while it is still not in the store (runs in a thread)."""
        out: dict[str, tuple[VersionSpec, LiteModel] | str | None] = {}
        for version in versions:
            stored = find(version)
            out[version] = None if stored is None else self._attempt(version, functools.partial(_same, stored))
        return out

    def _apply(self, results: Mapping[str, tuple[VersionSpec, LiteModel] | str | None]) -> None:
        """Swap in new dicts (the event loop never sees one half-updated)."""
        models, specs, failed = dict(self.models), dict(self.specs), dict(self.failed)
        for version, result in results.items():
            if result is None:
                continue
            self.absent.discard(version)
            if isinstance(result, str):
                failed[version] = result
                logger.warning("stage %s %s NOT loaded: %s", self.stage, version, result)
                continue
            specs[version], models[version] = result
            failed.pop(version, None)
            logger.info("stage %s %s loaded from the store (LiteRT, %s bytes)", self.stage, version,
                        f"{result[1].size_bytes:,}")  # fmt: skip
        self.models, self.specs, self.failed = models, specs, failed

    def log_summary(self) -> None:
        for version, model in self.models.items():
            logger.info("stage %s %s loaded (LiteRT, %s bytes)", self.stage, version, f"{model.size_bytes:,}")
        for version, reason in self.failed.items():
            logger.warning("stage %s %s NOT loaded: %s", self.stage, version, reason)

    def status(self) -> dict[str, Any]:
        return {"stage": self.stage, "loaded": sorted(self.models), "failed": dict(self.failed)}


def load_stage_model(folder: Path, meta: Mapping[str, Any], name: str) -> tuple[VersionSpec, LiteModel]:
    """One stored stage model, verified: the files match the sha256 checksums recorded at import, and
    the scaler has the version's features in order with finite numbers, and calibration.json (when the
    entry has one) is a valid map (ModelFileError otherwise).

    An entry imported before checksums existed (none in its metadata) loads with a warning; one imported
    before calibration existed (no calibration.json) serves its raw probabilities, with a warning.
    """
    spec = VersionSpec.from_metadata(dict(meta))
    checksums = recorded_checksums(meta)
    names = {LITE_FILE, SCALER_FILE, CALIBRATION_FILE} | set(checksums or ())
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
    calibration = _calibration(files[CALIBRATION_FILE], checksums, name)
    return spec, LiteModel(flatbuffer, scaler, spec, calibration)


def _calibration(data: bytes | None, checksums: Mapping[str, str] | None, name: str) -> Calibration:
    """The stage's calibration map; identity (with a warning) for entries imported before maps existed."""
    if data is None:  # a recorded map that is missing was refused by verify_checksums already
        logger.warning(
            "%s has no %s (imported before calibration existed): serving its raw probabilities; %s to add it",
            name,
            CALIBRATION_FILE,
            REIMPORT,
        )
        return IDENTITY_MAP
    if checksums is not None and CALIBRATION_FILE not in checksums:
        raise ModelFileError(f"{CALIBRATION_FILE} was added after import (no checksum recorded for it): {REIMPORT}")
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise ModelFileError(f"{CALIBRATION_FILE} is not valid JSON: {exc}") from exc
    return Calibration.from_json(parsed)


def _same(value: Any) -> Any:
    return value


def _read_lite(folder: Path) -> bytes:
    lite = folder / LITE_FILE
    if not lite.is_file():
        raise FileNotFoundError(f"{folder} has no {LITE_FILE}: {REIMPORT}")
    return lite.read_bytes()
