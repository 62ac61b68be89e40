"""The seed's way, for comparison: FastAPI + uvicorn, Keras `model.predict` per request and stage.

Same models (from the BentoML store), same feature module, same route and envelope.
Run: python -m bench.baseline.server --port 8001
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import bentoml
import keras
import numpy as np
import uvicorn
from fastapi import FastAPI

from aifx.candles import validate_ohlc
from aifx.features import window_features
from aifx.versions import MODEL_FILE, SCALER_FILE, Scaler, VersionSpec, model_name

VERSION = "v3.1"
app = FastAPI()
stored = bentoml.models.get(model_name(VERSION, 1))
spec = VersionSpec.from_metadata(stored.info.metadata)
scaler = Scaler.from_json(json.loads(Path(stored.path, SCALER_FILE).read_text()))
stage1 = keras.models.load_model(Path(stored.path, MODEL_FILE))
stage2 = keras.models.load_model(Path(bentoml.models.get(model_name(VERSION, 2)).path, MODEL_FILE))


@app.get("/health")
def health() -> dict[str, object]:
    return {"status": "healthy", "model_loaded": True, "model_version": VERSION}


@app.post("/reversal/predict")
def predict(body: dict) -> dict[str, object]:
    rows = body["data"]
    candles = validate_ohlc(
        np.array([r["timestamp"].rstrip("Z") for r in rows], dtype="datetime64[ns]"),
        *(np.array([r[k] for r in rows], dtype=np.float64) for k in ("open", "high", "low", "close")),
    )
    x = scaler.transform(window_features(candles, spec.features, spec.window))[None].astype(np.float32)
    p1 = float(stage1.predict(x, verbose=0)[0, 0])
    p2 = float(stage2.predict(x, verbose=0)[0, 0]) if p1 >= spec.threshold else None
    if p2 is None:
        signal, confidence = "hold", 1 - p1
    else:
        signal, confidence = ("long" if p2 >= 0.5 else "short"), (p1 + max(p2, 1 - p2)) / 2
    now = datetime.now(UTC).isoformat()
    data = {"signal": signal, "confidence": confidence, "stage1_prob": p1, "stage2_prob": p2, "model_version": VERSION}
    return {"success": True, "data": data, "error": None, "timestamp": now}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8001)
    uvicorn.run(app, host="127.0.0.1", port=ap.parse_args().port, log_level="warning")
