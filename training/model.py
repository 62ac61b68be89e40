"""The Keras network both stages use, and a seeded fit."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def build_model(window: int, n_features: int, seed: int) -> keras.Model:
    """A small Conv1D + dense binary classifier over a (window x features) sample."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window, n_features), name="window")
    x = keras.layers.Conv1D(32, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(48, activation="relu")(x)
    x = keras.layers.Dropout(0.2, seed=seed)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="prob")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def balanced_weights(y: np.ndarray) -> dict[int, float]:
    """Class weights so that each class carries half of the loss."""
    pos = float(y.mean()) if len(y) else 0.5
    pos = min(max(pos, 1e-6), 1 - 1e-6)
    return {0: 0.5 / (1 - pos), 1: 0.5 / pos}


def fit(x: np.ndarray, y: np.ndarray, seed: int, epochs: int, verbose: int = 0, balance: bool = True) -> keras.Model:
    """Train a fresh model on scaled samples; deterministic for a seed."""
    model = build_model(x.shape[1], x.shape[2], seed)
    weights = balanced_weights(y) if balance else None
    model.fit(
        x.astype(np.float32), y.astype(np.float32), epochs=epochs, batch_size=64,
        class_weight=weights, shuffle=True, verbose=verbose,
    )  # fmt: skip
    return model


def predict_proba(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Probabilities for many samples at once (training-time evaluation only)."""
    if len(x) == 0:
        return np.zeros(0)
    return model.predict(x.astype(np.float32), batch_size=1024, verbose=0).reshape(-1)
