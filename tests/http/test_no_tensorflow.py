"""Serving processes never import TensorFlow: a stage worker and an entry worker after start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.http
ROOT = Path(__file__).resolve().parents[2]

# Starts what a worker starts: the stage services load their models, the entry service runs its
# start-up hooks (TestClient enters the ASGI lifespan) and serves one prediction.
WORKER = """
import json, sys, tempfile, warnings
warnings.simplefilter("ignore")
from starlette.testclient import TestClient
from runners.detector import ReversalDetector
from runners.direction import DirectionClassifier
stages = (ReversalDetector(), DirectionClassifier())
after_stages = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
stage_heavy = sorted({m.split(".")[0] for m in sys.modules} & {"pandas", "talib", "sqlalchemy", "scipy"})
from service import ReversalEngine
with TestClient(ReversalEngine.to_asgi()) as c:
    health = c.get("/health").json()
    served = c.post("/reversal/predict", json={"pair": "EUR/USD", "timeframe": "1h", "features": [[0.0] * 12] * 20})
after_entry = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
print(json.dumps({"stages": after_stages, "entry": after_entry, "loaded": health["loaded_versions"],
                  "stage_heavy": stage_heavy,
                  "status": served.status_code}))
"""


def test_stage_and_entry_workers_import_no_tensorflow(model_store, tmp_path):
    env = {
        **os.environ,
        **model_store.env,
        "PYTHONPATH": str(ROOT),
        "AIFX_DATABASE_URL": f"sqlite:///{tmp_path}/state.db",
    }
    out = subprocess.run([sys.executable, "-c", WORKER], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded"] and report["status"] == 200, report
    assert report["stages"] == [] and report["entry"] == [], report
    assert report["stage_heavy"] == [], report  # stage workers compute no features and touch no database
