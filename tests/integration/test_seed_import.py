"""A seed-format folder (.h5 models, pickled scaler) imports, loads and predicts."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aifx.features import FEATURE_SETS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

LOAD_AND_PREDICT = """
import json, sys
from pathlib import Path
import bentoml
from training.candles_csv import load_candles_csv
from aifx.features import window_features
from aifx.versions import LITE_FILE, SCALER_FILE, Scaler, VersionSpec, model_name
from runners.inference import LiteModel

version = sys.argv[1]
candles = load_candles_csv("data/FOREX_EURUSD_1H_ASK.csv").slice(0, 300)
out = {}
for stage in (1, 2):
    try:
        stored = bentoml.models.get(model_name(version, stage))
    except bentoml.exceptions.NotFound:
        continue
    spec = VersionSpec.from_metadata(stored.info.metadata)
    scaler = Scaler.from_json(json.loads(Path(stored.path, SCALER_FILE).read_text()))
    assert Path(stored.path, LITE_FILE).is_file()
    model = LiteModel.from_store(Path(stored.path), scaler, spec)
    rows = window_features(candles, spec.features, spec.window)
    out[stage] = {"prob": float(model(rows[None])[0]), "meta": stored.info.metadata}
print("RESULT" + json.dumps(out))
"""


def make_seed_folder(folder: Path, prefix: str, features: tuple[str, ...], with_stage2: bool) -> None:
    """Write the seed's file set with Keras (.h5) and scikit-learn (pickled StandardScaler)."""
    import keras
    from sklearn.preprocessing import StandardScaler

    folder.mkdir(parents=True, exist_ok=True)
    stages = [("reversal_detector_stage1.h5", 1)] + ([("direction_classifier_stage2.h5", 2)] if with_stage2 else [])
    for name, seed in stages:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential(
            [
                keras.Input((20, len(features))),
                keras.layers.Flatten(),
                keras.layers.Dense(1, activation="sigmoid"),
            ]
        )
        model.save(folder / f"{prefix}{name}")
    scaler = StandardScaler().fit(np.random.default_rng(0).normal(size=(200, len(features))))
    (folder / f"{prefix}feature_scaler.pkl").write_bytes(pickle.dumps(scaler))
    (folder / f"{prefix}selected_features.json").write_text(json.dumps(list(features)))
    (folder / f"{prefix}stage1_metadata.json").write_text(json.dumps({"threshold": 0.4, "recall": 0.79}))


def run(args: list[str], home: Path) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(("version", "prefix", "with_stage2"), [("v3.0", "", True), ("v3.1", "profitable_", False)])
def test_seed_folder_imports_loads_and_predicts(tmp_path, version, prefix, with_stage2):
    folder = tmp_path / "trained"
    make_seed_folder(folder, prefix, FEATURE_SETS[version], with_stage2)
    log = run(["-m", "model_store_import", "seed", str(folder), "--version", version, "--prefix", prefix],
              tmp_path / "bentoml")  # fmt: skip
    assert "import only files you trust" in log
    assert f"imported stage 1: aifx-{version}-stage1:" in log
    out = run(["-c", LOAD_AND_PREDICT, version], tmp_path / "bentoml")
    result = json.loads(out.split("RESULT", 1)[1].splitlines()[0])
    assert sorted(result) == (["1", "2"] if with_stage2 else ["1"])
    for stage in result.values():
        assert 0.0 <= stage["prob"] <= 1.0
        assert stage["meta"]["threshold"] == 0.4
        assert stage["meta"]["features"] == list(FEATURE_SETS[version])
    assert result["1"]["meta"]["stages"] == ([1, 2] if with_stage2 else [1])
