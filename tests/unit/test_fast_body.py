"""msgspec's reading of the hot routes' bodies never accepts what pydantic refuses, and never reads it otherwise.

The fast path (aifx/serving/fast_body.py) may hand any body to pydantic; what it must not do is answer one
itself differently. Bodies are built as JSON text, so duplicate keys, number spellings and bad escapes are
in reach, not only what json.dumps writes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aifx.serving.errors import BadCandles
from aifx.serving.fast_body import batch_request, predict_request
from aifx.serving.inputs import to_candles, to_candles_many
from aifx.serving.schemas import BatchRequest, FastCandle, PredictRequest
from bench.payloads import predict_bodies

NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "-0", "-0.0", "1e400", "-1e400", "1e-400", "1E2", "1.5e+3", "1e308", "2e308", "5e-324",
                     "01", "1.", ".5", "+1", "0x10", "NaN", "Infinity", "-Infinity", "1_000"]),
)  # fmt: skip
TEXTS = st.one_of(
    st.text(max_size=40).map(json.dumps),
    st.text(max_size=140).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.sampled_from(['"EUR/USD"', '"1h"', '"v3.1"', '"2017-10-03T17:00:00Z"', '"\\ud800"', '"\\u0000"', '" "',
                     '"a\\tb"', '"' + "x" * 32 + '"', '"' + "x" * 33 + '"', '"' + "é" * 16 + '"', '"' + "u" * 64 + '"',
                     '"' + "u" * 65 + '"', '"' + "u" * 128 + '"', '"' + "u" * 129 + '"', '""', '"\\u00e9"']),
)  # fmt: skip
SCALARS = st.one_of(NUMBERS, TEXTS, st.sampled_from(["true", "false", "null", "[]", "{}", "[1]", '{"a":1}']))


def _obj(pairs: list[tuple[str, str]]) -> str:
    """A JSON object from (key, value text) pairs, duplicates kept."""
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


CANDLE_KEYS = ["timestamp", "open", "high", "low", "close"]
ITEM_KEYS = ["pair", "timeframe", "data", "version", "user_id", "userId", "features", "bar_time", "extra"]
GOOD = {
    "timestamp": st.sampled_from(['"2017-10-03T17:00:00Z"', "1507050000", "1507050000000", "1.5e9", '"2017-10-03"']),
    "price": st.floats(0.5, 2.0).map(repr),
    "volume": st.sampled_from(["null", "0", "-0.0", "12.5", "1e6", "-0.5", "-1", "-1e-300"]),
    "pair": st.one_of(st.sampled_from(['"EUR/USD"', '"GBP/JPY"']), TEXTS),
    "timeframe": st.one_of(st.just('"1h"'), TEXTS),
    "optional": st.one_of(st.just("null"), TEXTS),
}


@st.composite
def items(draw: st.DrawFn) -> str:
    """A well-formed item (1-3 candles, optional volume, version and user_id), then 0-2 changes: a key dropped,
    repeated or added, or any value given to a key, at the item's level or a candle's."""
    candles = []
    for _ in range(draw(st.integers(1, 3))):
        candle = [("timestamp", draw(GOOD["timestamp"]))] + [(k, draw(GOOD["price"])) for k in CANDLE_KEYS[1:]]
        if draw(st.booleans()):
            candle.append(("volume", draw(GOOD["volume"])))
        candles.append(candle)
    item = [("pair", draw(GOOD["pair"])), ("timeframe", draw(GOOD["timeframe"])), ("data", "")]
    item += [(k, draw(GOOD["optional"])) for k in ("version", "user_id") if draw(st.booleans())]
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from([item, *candles]))
        keys = CANDLE_KEYS + ["volume", "Open", "x"] if target is not item else ITEM_KEYS
        at = draw(st.integers(0, len(target) - 1))
        change = draw(st.sampled_from(["drop", "repeat", "add", "value"]))
        if change == "drop" and len(target) > 1:
            del target[at]
        elif change == "repeat":
            target.append((target[at][0], draw(SCALARS)))
        elif change == "add":
            target.append((draw(st.sampled_from(keys)), draw(SCALARS)))
        elif change == "value":
            target[at] = (target[at][0], draw(SCALARS))
    data = "[" + ",".join(_obj(c) for c in candles) + "]"
    return _obj([(k, data if k == "data" and v == "" else v) for k, v in item])


ITEM = items()


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, floats to the bit (so -0.0 is not 0.0 and 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def agrees(fast: PredictRequest, reference: PredictRequest) -> bool:
    """The same fields, values and set fields; the same candles (FastCandle structs against CandleIn dicts, a
    volume that is absent or null alike, as to_candles reads both), and the same arrays from to_candles."""
    fields = same(fast.model_dump(exclude={"data"}), reference.model_dump(exclude={"data"}))
    mine, theirs = [_candle(c) for c in fast.data or []], [_candle(c) for c in reference.data or []]
    return (
        fields
        and same(mine, theirs)
        and fast.model_fields_set == reference.model_fields_set
        and _read(fast) == _read(reference)
    )


def _candle(candle: Any) -> dict[str, Any]:
    """A candle as a dict without a null or absent volume."""
    found = msgspec.structs.asdict(candle) if isinstance(candle, FastCandle) else dict(candle)
    return {k: v for k, v in found.items() if not (k == "volume" and v is None)}


def _read_many(batch: BatchRequest) -> list[Any]:
    """What to_candles_many makes of a batch's candles, item by item."""
    found = to_candles_many([item.data or [] for item in batch.items if isinstance(item, PredictRequest)])
    return [
        str(c) if isinstance(c, BadCandles) else [a.tolist() for a in (c.timestamp, c.open, c.close)] for c in found
    ]


def _read(req: PredictRequest) -> Any:
    """What to_candles makes of the request's candles: its arrays as lists, or its error message."""
    try:
        c = to_candles(req.data or [])
    except BadCandles as exc:
        return str(exc)
    return [c.timestamp.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
            None if c.volume is None else c.volume.tolist()]  # fmt: skip


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ITEM, st.sampled_from(["", " ", "\n"]))
def test_a_predict_body_msgspec_reads_is_one_pydantic_reads_the_same(item: str, pad: str) -> None:
    raw = (pad + item + pad).encode()
    fast = predict_request(raw)
    if fast is None:
        return  # pydantic reads it: nothing to compare
    reference = PredictRequest.model_validate_json(raw)  # raises if msgspec accepted what pydantic refuses
    assert agrees(fast, reference), (raw, fast, reference)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(ITEM, min_size=1, max_size=3),
    st.lists(st.tuples(st.sampled_from(["items", "x"]), SCALARS), max_size=1),  # a repeated or an unknown key
)
def test_a_batch_body_msgspec_reads_is_one_pydantic_reads_the_same(items: list[str], extra: list[Any]) -> None:
    raw = _obj([("items", "[" + ",".join(items) + "]"), *extra]).encode()
    fast = batch_request(raw)
    if fast is None:
        return
    reference = BatchRequest.model_validate_json(raw)
    assert len(fast.items) == len(reference.items)
    for mine, theirs in zip(fast.items, reference.items, strict=True):
        assert isinstance(mine, PredictRequest) and isinstance(theirs, PredictRequest)
        assert agrees(mine, theirs), (raw, mine, theirs)
    assert _read_many(fast) == _read_many(reference)  # the stacked parse of both kinds of candles


def test_the_common_form_is_read_by_msgspec() -> None:
    """The bench's bodies (real candles, ISO times) take the fast path, and read as pydantic reads them."""
    bodies = predict_bodies(20, seed=3)
    for body in bodies:
        raw = json.dumps({**body, "version": "v3.1", "user_id": "trader-7"}).encode()
        fast = predict_request(raw)
        assert fast is not None and agrees(fast, PredictRequest.model_validate_json(raw))
    batch = batch_request(json.dumps({"items": bodies}).encode())
    assert batch is not None and len(batch.items) == 20


def test_what_the_fast_path_leaves_to_pydantic() -> None:
    """Refusals, other keys and the schema's limits go to pydantic (None), which answers them."""
    body: dict[str, Any] = predict_bodies(1, seed=4)[0]
    for changed in (
        {**body, "data": []},  # pydantic's "no input" message
        {**body, "userId": "alias"},  # the alias pydantic resolves
        {**body, "user_id": "tab\there"},  # the printable check pydantic words
        {**body, "user_id": "   "},
        {**body, "features": [[0.1]]},
        {**body, "data": body["data"][:1] * 1001},  # over MAX_CANDLES
        {**body, "pair": "P" * 33},
        {**body, "data": [{**body["data"][0], "open": 0}]},
        {**body, "data": [{**body["data"][0], "timestamp": True}]},  # a bool is not a time
        {**body, "data": [{**body["data"][0], "volume": -1}]},
        {**body, "user_id": ""},
    ):
        assert predict_request(json.dumps(changed).encode()) is None
    for items in ([], [body] * 101, [body, {**body, "data": []}]):
        assert batch_request(json.dumps({"items": items}).encode()) is None
    try:
        PredictRequest.model_validate_json(json.dumps({**body, "data": []}))
    except ValidationError as exc:
        assert "no input" in str(exc)
    else:
        raise AssertionError("pydantic accepted an empty data list")
