"""Many users asking about one bar: the worker's window cache answers repeats without a stage call (issue 17)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


def parts() -> Any:
    from aifx.http.bootstrap import app

    return app.state.parts


class Counting:
    """A stage runner's call that counts the windows it scores."""

    def __init__(self, real: Any) -> None:
        self.real, self.windows = real, 0

    def __call__(self, windows: list) -> list[float]:
        self.windows += len(windows)
        return self.real(windows)


@pytest.fixture
def stage1(client, monkeypatch) -> Counting:
    detector = parts().predictor.detector
    counting = Counting(detector.detect)
    monkeypatch.setattr(detector, "detect", counting)
    return counting


def _answer(r: Any) -> dict:
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json()["data"].items() if k != "timestamp"}


def test_the_same_candles_are_scored_once_and_answered_alike(client, candle_json, stage1):
    body = {**PAIR, "data": candle_json(4100, 64)}
    first = _answer(client.post("/reversal/predict", json=body))
    scored = stage1.windows
    assert scored >= 1  # the served version (and any shadow version) went to Stage 1
    again = [_answer(client.post("/reversal/predict", json={**body, "userId": f"u{i}"})) for i in range(5)]
    assert stage1.windows == scored  # five more users, no stage call
    assert all(a == first for a in again)
    batch = client.post("/reversal/predict/batch", json={"items": [body, body]})
    assert batch.status_code == 200 and stage1.windows == scored
    assert [_answer_item(x) for x in batch.json()["data"]["results"]] == [first, first]


def _answer_item(item: dict) -> dict:
    assert item["success"], item
    return {k: v for k, v in item["data"].items() if k != "timestamp"}


def test_different_candles_never_share_a_result(client, candle_json, stage1):
    body = {**PAIR, "data": candle_json(4200, 64)}
    _answer(client.post("/reversal/predict", json=body))
    before = stage1.windows
    changed = [dict(c) for c in body["data"]]
    changed[-1]["close"] = changed[-1]["close"] * (1 + 1e-12)  # one value in the last bit or so
    changed[-1]["high"] = max(changed[-1]["high"], changed[-1]["close"])
    _answer(client.post("/reversal/predict", json={**body, "data": changed}))
    assert stage1.windows > before
    older = {**PAIR, "data": candle_json(4200, 80)}  # more history, same latest window: same result, no call
    after = stage1.windows
    _answer(client.post("/reversal/predict", json=older))
    assert stage1.windows == after
