"""Model files are checked before they serve: sha256 recorded at import, verified at load; scaler vs version."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aifx.versions import (
    CALIBRATION_FILE,
    CHECKSUMS_KEY,
    DRIFT_FILE,
    LITE_FILE,
    MODEL_FILE,
    SCALER_FILE,
    ModelFileError,
    Scaler,
    VersionSpec,
    check_scaler,
    default_spec,
    model_name,
    recorded_checksums,
    sha256_hex,
    verify_checksums,
)

pytestmark = pytest.mark.unit

FILES = {MODEL_FILE: b"keras", LITE_FILE: b"flatbuffer", SCALER_FILE: b'{"features": []}'}


def _spec() -> VersionSpec:
    return VersionSpec("vt", ("a", "b", "c"), 20)


def _scaler(features: tuple[str, ...] = ("a", "b", "c"), mean: Any = (0.0, 1.0, 2.0), scale: Any = (1.0, 2.0, 3.0)):
    return Scaler(features, np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64))


# --- the verification functions ---------------------------------------------------------------


def test_verify_checksums_accepts_the_imported_bytes_only() -> None:
    recorded = {name: sha256_hex(data) for name, data in FILES.items()}
    verify_checksums(FILES, recorded)
    verify_checksums(FILES, {k: v.upper() for k, v in recorded.items()})  # hex case does not matter
    with pytest.raises(ModelFileError, match=f"{SCALER_FILE} checksum mismatch"):
        verify_checksums({**FILES, SCALER_FILE: b'{"features": [] }'}, recorded)  # one byte more
    with pytest.raises(ModelFileError, match=f"{MODEL_FILE} is missing"):
        verify_checksums({**FILES, MODEL_FILE: None}, recorded)
    without_lite = {k: v for k, v in recorded.items() if k != LITE_FILE}
    with pytest.raises(ModelFileError, match=f"no checksum recorded for {LITE_FILE}"):
        verify_checksums(FILES, without_lite)


def test_recorded_checksums_none_before_checksums_existed_and_malformed_refused() -> None:
    assert recorded_checksums({"version": "v3.1"}) is None
    recorded = {LITE_FILE: "ab" * 32, SCALER_FILE: "cd" * 32}
    assert recorded_checksums({CHECKSUMS_KEY: recorded}) == recorded
    for bad in ("abc", {}, {LITE_FILE: 1}, ["x"], {**recorded, "../../etc/passwd": "ab" * 32}):
        with pytest.raises(ModelFileError, match=CHECKSUMS_KEY):
            recorded_checksums({CHECKSUMS_KEY: bad})


def test_check_scaler_needs_the_versions_features_in_order_and_finite_numbers() -> None:
    check_scaler(_scaler(), _spec())
    with pytest.raises(ModelFileError, match="position 1: scaler 'c', version 'b'"):
        check_scaler(_scaler(("a", "c", "b")), _spec())  # same names, swapped order
    with pytest.raises(ModelFileError, match="2 scaler features, 3 in the version"):
        check_scaler(_scaler(("a", "b"), (0, 0), (1, 1)), _spec())
    with pytest.raises(ModelFileError, match=r"scaler mean has shape \(2,\), expected \(3,\)"):
        check_scaler(_scaler(mean=(0.0, 1.0)), _spec())
    with pytest.raises(ModelFileError, match="scaler mean has non-finite values"):
        check_scaler(_scaler(mean=(0.0, np.nan, 2.0)), _spec())
    with pytest.raises(ModelFileError, match="scaler scale has non-finite values"):
        check_scaler(_scaler(scale=(1.0, np.inf, 3.0)), _spec())
    with pytest.raises(ModelFileError, match="non-positive"):
        check_scaler(_scaler(scale=(1.0, -2.0, 3.0)), _spec())


def test_import_refuses_a_scaler_that_does_not_fit_the_version(tmp_path: Path) -> None:
    from model_store_import.importer import write_version

    spec = default_spec("v3.1")
    features = spec.features
    n = len(features)
    swapped = (features[1], features[0], *features[2:])
    unused = {1: tmp_path / "never-read.keras"}  # refused before any file is read
    with pytest.raises(ValueError, match="v3.1: scaler features differ"):
        write_version(spec, Scaler(swapped, np.zeros(n), np.ones(n)), unused)
    mean = np.zeros(n)
    mean[3] = np.nan
    with pytest.raises(ValueError, match="v3.1: scaler mean has non-finite values"):
        write_version(spec, Scaler(features, mean, np.ones(n)), unused)


# --- StageModels.load against copies of the test store ------------------------------------------


@pytest.fixture
def stage1_copy(model_store, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the store's v3.1 Stage 1 folder and its metadata (the test may tamper with both)."""
    import bentoml

    stored = bentoml.models.get(model_name("v3.1", 1))
    folder = tmp_path / "v3.1-stage1"
    shutil.copytree(stored.path, folder)
    return folder, json.loads(json.dumps(stored.info.metadata))


def _refs(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """v3.1 from the (tampered) copy, v3.0 untouched from the store."""
    import bentoml

    copy = SimpleNamespace(path=str(folder), info=SimpleNamespace(metadata=meta))
    return {"v3.1": SimpleNamespace(resolve=lambda: copy), "v3.0": bentoml.models.BentoModel(model_name("v3.0", 1))}


def _load(folder: Path, meta: dict[str, Any]):
    from runners.inference import StageModels

    return StageModels.load(1, ["v3.1", "v3.0"], _refs(folder, meta))


def test_import_records_the_sha256_of_every_stored_file(stage1_copy) -> None:
    folder, meta = stage1_copy
    assert meta[CHECKSUMS_KEY] == {
        n: sha256_hex((folder / n).read_bytes())
        for n in (MODEL_FILE, LITE_FILE, SCALER_FILE, DRIFT_FILE, CALIBRATION_FILE)
    }
    stage = _load(folder, meta)
    assert stage.status() == {"stage": 1, "loaded": ["v3.0", "v3.1"], "failed": {}}


def test_tampered_scaler_bytes_leave_the_version_unloaded_and_the_others_serving(stage1_copy) -> None:
    folder, meta = stage1_copy
    data = json.loads((folder / SCALER_FILE).read_text())
    data["mean"][0] += 1e-3  # still a valid scaler, just not the imported one
    (folder / SCALER_FILE).write_text(json.dumps(data))
    stage = _load(folder, meta)
    assert stage.status()["loaded"] == ["v3.0"]
    reason = stage.failed["v3.1"]
    assert reason.startswith("aifx-v3.1-stage1 failed to load: scaler.json checksum mismatch"), reason


def test_tampered_model_and_missing_keras_file_are_refused(stage1_copy) -> None:
    folder, meta = stage1_copy
    lite = bytearray((folder / LITE_FILE).read_bytes())
    lite[-1] ^= 0x01  # one bit
    (folder / LITE_FILE).write_bytes(bytes(lite))
    assert "model.tflite checksum mismatch" in _load(folder, meta).failed["v3.1"]
    (folder / LITE_FILE).unlink()
    (folder / MODEL_FILE).unlink()
    assert "model.keras is missing" in _load(folder, meta).failed["v3.1"]


def test_scaler_with_swapped_feature_order_is_refused_even_with_matching_checksums(stage1_copy) -> None:
    folder, meta = stage1_copy
    data = json.loads((folder / SCALER_FILE).read_text())
    data["features"][0], data["features"][1] = data["features"][1], data["features"][0]
    (folder / SCALER_FILE).write_text(json.dumps(data))
    meta[CHECKSUMS_KEY][SCALER_FILE] = sha256_hex((folder / SCALER_FILE).read_bytes())  # a consistent forgery
    stage = _load(folder, meta)
    assert stage.status()["loaded"] == ["v3.0"]
    assert "scaler features differ from the version's feature list (position 0" in stage.failed["v3.1"]


def _load_logged(folder, meta, caplog):
    """_load with the runners' warnings captured (bentoml's loggers may not propagate to the root)."""
    runners_log = logging.getLogger("bentoml.aifx.runners")
    runners_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="bentoml.aifx.runners"):
            return _load(folder, meta)
    finally:
        runners_log.removeHandler(caplog.handler)


def test_entry_imported_before_checksums_loads_with_a_warning(stage1_copy, caplog) -> None:
    folder, meta = stage1_copy
    del meta[CHECKSUMS_KEY]
    stage = _load_logged(folder, meta, caplog)
    assert stage.status()["loaded"] == ["v3.0", "v3.1"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("aifx-v3.1-stage1 has no checksums" in w and "unverified" in w for w in warnings), warnings


def test_entry_without_checksums_still_gets_its_scaler_checked(stage1_copy) -> None:
    folder, meta = stage1_copy
    del meta[CHECKSUMS_KEY]
    data = json.loads((folder / SCALER_FILE).read_text())
    data["scale"][2] = float("inf")
    (folder / SCALER_FILE).write_text(json.dumps(data))  # Infinity: Python's json reads it back
    assert "scaler scale has non-finite values" in _load(folder, meta).failed["v3.1"]
    data["features"] = data["features"][::-1]
    data["scale"][2] = 1.0
    (folder / SCALER_FILE).write_text(json.dumps(data))
    assert "scaler features differ" in _load(folder, meta).failed["v3.1"]


# --- calibration.json: recorded at import, verified and validated at load ------------------------


def _rows(n: int = 16) -> np.ndarray:
    spec = default_spec("v3.1")
    return np.random.default_rng(0).normal(size=(n, spec.window, len(spec.features)))


def test_served_probability_is_the_network_output_through_the_stored_map(stage1_copy) -> None:
    from aifx.calibration import Calibration

    folder, meta = stage1_copy
    stored = Calibration.from_json(json.loads((folder / CALIBRATION_FILE).read_text()))
    assert not stored.is_identity  # tests/conftest.py gives the test models a real map
    model = _load(folder, meta).models["v3.1"]
    rows = _rows()
    raw = model.raw(rows)
    assert np.array_equal(model(rows), stored(raw)) and not np.allclose(model(rows), raw)


def test_tampered_calibration_is_refused(stage1_copy) -> None:
    folder, meta = stage1_copy
    data = json.loads((folder / CALIBRATION_FILE).read_text())
    data["a"] += 0.01  # still a valid map, just not the imported one
    (folder / CALIBRATION_FILE).write_text(json.dumps(data))
    stage = _load(folder, meta)
    assert stage.status()["loaded"] == ["v3.0"]
    assert stage.failed["v3.1"].startswith("aifx-v3.1-stage1 failed to load: calibration.json checksum mismatch")
    (folder / CALIBRATION_FILE).unlink()
    assert "calibration.json is missing" in _load(folder, meta).failed["v3.1"]


@pytest.mark.parametrize(
    "text,reason",
    [
        ('{"method": "platt", "a": -1.0, "b": 0.0}', "slope a must be positive"),
        ('{"method": "isotonic", "x": [0.2, 0.1], "y": [0.0, 1.0]}', "x must be strictly increasing"),
        ('{"method": "sigmoid"}', "unknown method 'sigmoid'"),
        ("{not json", "calibration.json is not valid JSON"),
    ],
)
def test_malformed_calibration_with_matching_checksum_is_refused(stage1_copy, text: str, reason: str) -> None:
    folder, meta = stage1_copy
    (folder / CALIBRATION_FILE).write_text(text)
    meta[CHECKSUMS_KEY][CALIBRATION_FILE] = sha256_hex(text.encode())  # a consistent forgery
    stage = _load(folder, meta)
    assert stage.status()["loaded"] == ["v3.0"]
    assert reason in stage.failed["v3.1"], stage.failed["v3.1"]


def test_calibration_added_after_import_is_refused(stage1_copy) -> None:
    folder, meta = stage1_copy
    del meta[CHECKSUMS_KEY][CALIBRATION_FILE]  # as if the file had been dropped in after the import
    assert "calibration.json was added after import" in _load(folder, meta).failed["v3.1"]


def test_entry_imported_before_calibration_serves_raw_probabilities_with_a_warning(stage1_copy, caplog) -> None:
    folder, meta = stage1_copy
    (folder / CALIBRATION_FILE).unlink()
    del meta[CHECKSUMS_KEY][CALIBRATION_FILE]
    stage = _load_logged(folder, meta, caplog)
    model = stage.models["v3.1"]
    rows = _rows()
    assert model.calibration.is_identity and np.array_equal(model(rows), model.raw(rows))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("aifx-v3.1-stage1 has no calibration.json" in w and "raw probabilities" in w for w in warnings)


def test_import_refuses_a_map_for_a_stage_without_a_model(tmp_path: Path) -> None:
    from aifx.calibration import IDENTITY_MAP
    from model_store_import.importer import write_version

    spec = default_spec("v3.1")
    n = len(spec.features)
    unused = {1: tmp_path / "never-read.keras"}
    with pytest.raises(ValueError, match=r"calibration maps for stages without a model: \[2\]"):
        write_version(spec, Scaler(spec.features, np.zeros(n), np.ones(n)), unused, calibrations={2: IDENTITY_MAP})
