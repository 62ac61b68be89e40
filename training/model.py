"""The Keras networks a version's stages use (its `architecture`), and a seeded fit.

"conv1d" (v3.0, v3.1): Conv1D + dense. "transformer" (v3.2): a small Transformer encoder over the
window, built from stock Keras layers only, so loading and the TFLite conversion need no custom
objects: the projection to d_model is an EinsumDense whose bias has one row per bar, i.e. a learned
position embedding; then `blocks` post-norm encoder blocks (multi-head self-attention, feed-forward,
residuals, LayerNorm); the head reads the average over bars and the latest bar's token (the label
is about the latest bar).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

ARCHITECTURES = ("conv1d", "transformer")
TRANSFORMER_SIZE = {"d_model": 16, "heads": 2, "blocks": 1, "ff": 32}  # used where a spec names no size


def build_model(
    window: int, n_features: int, seed: int, architecture: str = "conv1d", size: Mapping[str, int] | None = None
) -> keras.Model:
    """A small binary classifier over a (window x features) sample."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(window, n_features), name="window")
    if architecture == "conv1d":
        x = _conv1d(inputs, seed)
    elif architecture == "transformer":
        x = _transformer(inputs, seed, **{**TRANSFORMER_SIZE, **(size or {})})
    else:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    outputs = keras.layers.Dense(1, activation="sigmoid", name="prob")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    return model


def _conv1d(inputs: keras.KerasTensor, seed: int) -> keras.KerasTensor:
    x = keras.layers.Conv1D(32, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(48, activation="relu")(x)
    return keras.layers.Dropout(0.2, seed=seed)(x)


def _transformer(
    inputs: keras.KerasTensor, seed: int, d_model: int, heads: int, blocks: int, ff: int, dropout: float = 0.1
) -> keras.KerasTensor:
    window = int(inputs.shape[1])
    if d_model % heads:
        raise ValueError(f"d_model {d_model} is not a multiple of heads {heads}")
    x = keras.layers.EinsumDense("btf,fd->btd", output_shape=(window, d_model), bias_axes="td", name="embed")(inputs)
    for i in range(blocks):
        att = keras.layers.MultiHeadAttention(heads, d_model // heads, dropout=dropout, seed=seed + i)(x, x)
        x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, att]))
        h = keras.layers.Dense(ff, activation="relu")(x)
        h = keras.layers.Dropout(dropout, seed=seed + i)(keras.layers.Dense(d_model)(h))
        x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, h]))
    latest = keras.layers.Flatten()(keras.layers.Cropping1D((window - 1, 0))(x))
    x = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(x), latest])
    return keras.layers.Dropout(dropout, seed=seed)(x)


def balanced_weights(y: np.ndarray) -> dict[int, float]:
    """Class weights so that each class carries half of the loss."""
    pos = float(y.mean()) if len(y) else 0.5
    pos = min(max(pos, 1e-6), 1 - 1e-6)
    return {0: 0.5 / (1 - pos), 1: 0.5 / pos}


def fit(
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
    epochs: int,
    verbose: int = 0,
    balance: bool = True,
    architecture: str = "conv1d",
    size: Mapping[str, int] | None = None,
) -> keras.Model:
    """Train a fresh model on scaled samples; deterministic for a seed."""
    model = build_model(x.shape[1], x.shape[2], seed, architecture, size)
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
