"""Answers written by msgspec are the bytes Starlette's json.dumps wrote; what msgspec cannot write, json.dumps does."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from aifx.http.envelope import Answer
from bench.payloads import predict_bodies


def _starlette(content: Any) -> bytes:
    """Starlette's JSONResponse.render."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def test_predict_batch_and_error_answers_are_the_bytes_json_dumps_wrote(client):
    bodies = predict_bodies(30, seed=11)
    answers = [client.post("/reversal/predict", json=b) for b in bodies[:10]]
    answers.append(client.post("/reversal/predict/batch", json={"items": bodies[10:] + [{"pair": "EUR/USD"}]}))
    answers += [client.post("/reversal/predict", json={"pair": "EUR/USD"}), client.get("/reversal/models")]
    statuses = {r.status_code for r in answers}
    assert statuses == {200, 422}, statuses  # successes, a failed batch item and a refused body
    for r in answers:
        assert r.content == _starlette(r.json()), r.content[:200]


def test_what_msgspec_cannot_write_is_written_by_json_dumps() -> None:
    for content in ({"x": np.float64(0.25)}, {True: 1, "y": [1, 2]}, {None: "k"}):
        assert Answer(content).body == _starlette(content)


def test_a_float_that_is_not_finite_is_null_not_a_500() -> None:
    assert json.loads(Answer({"confidence": float("nan"), "edge": float("inf")}).body) == {
        "confidence": None,
        "edge": None,
    }
