"""Keras -> TensorFlow Lite (LiteRT) flatbuffer, done once when a model enters the store.

The stage runners run the flatbuffer with LiteRT's interpreter: a few microseconds per
call and ~50 MB per process instead of importing TensorFlow (~700 MB, seconds to start).
TensorFlow is imported here only, at conversion time.
"""

from __future__ import annotations

from pathlib import Path


def keras_to_tflite(keras_path: Path) -> bytes:
    """The TFLite flatbuffer of a saved Keras model (float32, no quantisation: same numbers)."""
    import keras
    import tensorflow as tf

    model = keras.models.load_model(keras_path, compile=False)
    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
