"""Training CLI -> artifacts -> `ensure` -> the store lists both stages of both versions with metadata."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], home: Path) -> str:
    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_cli_trains_evaluates_and_ensure_imports_both_versions(tmp_path):
    home, art = tmp_path / "bentoml", tmp_path / "artifacts"
    for version in ("v3.0", "v3.1"):
        log = run([sys.executable, "-m", "training", "--version", version, "--folds", "2", "--epochs", "1",
                   "--out", str(art / version)], home)  # fmt: skip
        assert "fold 2/2" in log and f"[{version}] done" in log
    first = run([sys.executable, "-m", "model_store_import", "ensure", "--artifacts", str(art), "v3.0", "v3.1"], home)
    assert first.count("imported stage") == 4
    again = run([sys.executable, "-m", "model_store_import", "ensure", "--artifacts", str(art), "v3.0", "v3.1"], home)
    assert again.count("already in the store") == 2
    bentoml = str(Path(sys.executable).parent / "bentoml")
    listed = json.loads(run([bentoml, "models", "list", "-o", "json"], home))
    names = sorted(m["tag"].split(":")[0] for m in listed)
    assert names == [f"aifx-{v}-stage{s}" for v in ("v3.0", "v3.1") for s in (1, 2)]
    for version, n_features, scheme in (("v3.0", 10, "swing_point"), ("v3.1", 12, "triple_barrier")):
        info = json.loads(run([bentoml, "models", "get", f"aifx-{version}-stage1", "-o", "json"], home))
        meta = info["metadata"]
        assert info["labels"] == {"project": "aifx", "version": version, "stage": "1"}
        assert len(meta["features"]) == n_features and meta["window"] == 20
        assert meta["min_candles"] > meta["window"]
        # Chosen by Matthews correlation on the calibration blocks (training/evaluate.py), served as chosen.
        assert 0 < meta["threshold"] < 1 and meta["threshold"] == meta["metrics"]["threshold"]["value"]
        assert meta["label_params"]["scheme"] == scheme
        assert meta["training_data"]["rows"] == 6225 and len(meta["training_data"]["sha256"]) == 64
        overall = meta["metrics"]["overall"]
        assert {"model", "logreg", "prior"} <= set(overall)
        assert 0 < overall["model"]["base_rate"] < 1
        assert meta["metrics"]["backtest"]["costs"][0]["cost_pips"] == 1.0
