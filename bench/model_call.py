"""Per-call cost of one stored stage model: LiteRT (what the services run) vs Keras and tf.function.

Usage: python -m bench.model_call [VERSION]   (needs the models in the BentoML store: make models)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bentoml
import numpy as np

from aifx.versions import MODEL_FILE, SCALER_FILE, Scaler, VersionSpec, model_name
from runners.inference import LiteModel


def median_us(fn, x: np.ndarray, n: int = 300) -> float:
    """Median wall time of fn(x) in microseconds, after a warm-up."""
    for _ in range(20):
        fn(x)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def main(version: str = "v3.1") -> None:
    import keras
    import tensorflow as tf

    stored = bentoml.models.get(model_name(version, 1))
    spec = VersionSpec.from_metadata(stored.info.metadata)
    scaler = Scaler.from_json(json.loads(Path(stored.path, SCALER_FILE).read_text()))
    lite = LiteModel.from_store(Path(stored.path), scaler, spec)
    model = keras.models.load_model(Path(stored.path, MODEL_FILE), compile=False)
    compiled = tf.function(lambda x: model(x, training=False))
    rows = np.random.default_rng(0).normal(size=(100, spec.window, len(spec.features)))
    ref = np.asarray(model(scaler.transform(rows).astype(np.float32), training=False)).reshape(-1)
    print(f"{stored.tag}: max |LiteRT - Keras| over 100 windows = {np.abs(lite(rows) - ref).max():.2e}")
    print("| batch | LiteRT us | tf.function us | Keras model.predict us |\n|---|---|---|---|")
    for n in (1, 100):
        x = rows[:n]
        xs = scaler.transform(x).astype(np.float32)
        cells = [median_us(lite, x), median_us(compiled, xs), median_us(lambda a: model.predict(a, verbose=0), xs, 50)]
        print(f"| {n} | " + " | ".join(f"{c:,.0f}" for c in cells) + " |")


if __name__ == "__main__":
    main(*sys.argv[1:])
