"""Serving processes never import TensorFlow or pandas: a service worker after start-up, its runners loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.http
ROOT = Path(__file__).resolve().parents[2]

# Starts what a worker starts: the runners load their models, the service runs its start-up hooks
# (TestClient enters the ASGI lifespan) and serves one prediction.
WORKER = """
import json, sys, tempfile, warnings
warnings.simplefilter("ignore")
from starlette.testclient import TestClient
from runners.stage import DirectionClassifier, ReversalDetector
runners_only = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "pandas", "sqlalchemy"})
from service import ReversalEngine
with TestClient(ReversalEngine.to_asgi()) as c:
    health = c.get("/health").json()
    served = c.post("/reversal/predict", json={"pair": "EUR/USD", "timeframe": "1h", "features": [[0.0] * 12] * 20})
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "pandas", "matplotlib"})
print(json.dumps({"runners": runners_only, "worker": heavy, "loaded": health["loaded_versions"],
                  "status": served.status_code}))
"""


def test_a_service_worker_imports_no_tensorflow_or_pandas(model_store, tmp_path):
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
    assert report["runners"] == [] and report["worker"] == [], report
