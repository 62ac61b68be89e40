"""Import the test-only versions `v9.1` ("always long") and, when asked, `v9.2` ("always short") into the
BentoML store named by BENTOML_HOME.

Stage 1 and Stage 2 are real Keras models whose weights are zero and whose output bias is +8 (Stage 2 of
v9.2: -8), so P(reversal) is sigmoid(8) ~ 0.9997 and P(long) sigmoid(+-8) whatever the window: v9.1 signals
long on every bar, v9.2 short. On candles with a planted upward drift (tests/integration/test_promotion_live.py)
going long is better than any version that also goes short or holds, by construction, and on a planted
downward drift it loses on every bar; on a driftless walk neither side is better. They go through the real
importer (TFLite conversion, checksums).

Run: BENTOML_HOME=... python tests/integration/always_long.py [v9.2]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = "v9.1"
SHORT_VERSION = "v9.2"
NAMES = {VERSION: "Always long (test only)", SHORT_VERSION: "Always short (test only)"}


def constant_model(window: int, n_features: int, bias: float):
    """A Keras model over (window x features) that outputs sigmoid(bias) for every input."""
    import keras
    import numpy as np

    inputs = keras.Input(shape=(window, n_features), name="window")
    x = keras.layers.Flatten()(inputs)
    out = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros", name="prob")(x)
    model = keras.Model(inputs, out)
    layer = model.get_layer("prob")
    layer.set_weights([layer.get_weights()[0], np.array([bias], dtype="float32")])
    return model


def main(versions: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    from aifx.features import sample_windows
    from aifx.versions import Scaler, VersionSpec, default_spec
    from model_store_import.importer import write_version
    from training.candles_csv import load_candles_csv

    base = default_spec("v3.1")
    candles = load_candles_csv(ROOT / "data" / "FOREX_EURUSD_1H_ASK.csv").slice(0, 2000)
    x, _ = sample_windows(candles, base.features, base.window)
    scaler = Scaler.fit(base.features, x.reshape(-1, x.shape[-1]))
    for version in versions:
        spec = VersionSpec(version, base.features, base.window, 0.5, base.label_params, NAMES[version])
        with tempfile.TemporaryDirectory() as work:
            files = {}
            for stage in (1, 2):
                files[stage] = Path(work) / f"stage{stage}.keras"
                bias = -8.0 if stage == 2 and version == SHORT_VERSION else 8.0
                constant_model(spec.window, len(spec.features), bias).save(files[stage])
            tags = write_version(spec, scaler, files, {"source": "tests/integration/always_long.py"})
        print(tags)


if __name__ == "__main__":
    main([VERSION, *sys.argv[1:]])
