"""In-process HTTP tests: bad requests, table-driven (`BAD`, also used by test_hot_routes.py), and bad paths."""

from __future__ import annotations

import json

import pytest

from tests.http.route_checks import PAIR, assert_envelope

pytestmark = pytest.mark.http


# ---- bad requests ---------------------------------------------------------------------------------


def _body(candle_json, mutate=None, n=80, **extra):
    rows = candle_json(3000, n)
    if mutate:
        mutate(rows)
    return {**PAIR, "data": rows, **extra}


def _set(i, key, value):
    def fn(rows):
        rows[i][key] = value

    return fn


def _swap(rows):
    rows[10]["timestamp"], rows[11]["timestamp"] = rows[11]["timestamp"], rows[10]["timestamp"]


def _dup(rows):
    rows[11]["timestamp"] = rows[10]["timestamp"]


BAD = [
    # (name, method, path, body builder (candle_json -> content bytes | dict), expected status, message part)
    ("empty body", "/reversal/predict", lambda cj: b"", 400, "body is empty"),
    ("not json", "/reversal/predict", lambda cj: b"{pair: EUR", 400, "not valid JSON"),
    ("json array", "/reversal/predict", lambda cj: [1, 2], 400, "JSON object"),
    ("json string", "/reversal/predict", lambda cj: "hello", 400, "JSON object"),
    ("missing pair", "/reversal/predict", lambda cj: {"timeframe": "1h", "data": cj(3000, 80)}, 422, "pair"),
    ("missing timeframe", "/reversal/predict", lambda cj: {"pair": "EUR/USD", "data": cj(3000, 80)}, 422, "timeframe"),
    ("pair wrong type", "/reversal/predict", lambda cj: _body(cj, pair=123), 422, "pair"),
    ("no data or features", "/reversal/predict", lambda cj: {**PAIR}, 422, "send `data`"),
    ("data not a list", "/reversal/predict", lambda cj: {**PAIR, "data": "candles"}, 422, "data"),
    (
        "candle missing close",
        "/reversal/predict",
        lambda cj: _body(cj, lambda r: r[5].pop("close")),
        422,
        "data[5].close",
    ),
    ("close not a number", "/reversal/predict", lambda cj: _body(cj, _set(5, "close", "abc")), 422, "data[5].close"),
    ("close NaN", "/reversal/predict", lambda cj: _body(cj, _set(7, "close", float("nan"))), 422, "finite"),
    ("high infinite", "/reversal/predict", lambda cj: _body(cj, _set(7, "high", float("inf"))), 422, "finite"),
    ("negative price", "/reversal/predict", lambda cj: _body(cj, _set(8, "low", -1.0)), 422, "greater than 0"),
    ("zero price", "/reversal/predict", lambda cj: _body(cj, _set(8, "open", 0)), 422, "greater than 0"),
    ("high below low", "/reversal/predict", lambda cj: _body(cj, _set(9, "high", 0.5)), 422, "below low"),
    ("close above high", "/reversal/predict", lambda cj: _body(cj, _set(9, "close", 9.0)), 422, "outside"),
    ("negative volume", "/reversal/predict", lambda cj: _body(cj, _set(9, "volume", -5)), 422, "volume"),
    ("too few candles", "/reversal/predict", lambda cj: _body(cj, n=10), 422, "need at least 53"),
    ("unsorted timestamps", "/reversal/predict", lambda cj: _body(cj, _swap), 422, "not sorted"),
    ("duplicate timestamps", "/reversal/predict", lambda cj: _body(cj, _dup), 422, "duplicate"),
    ("bad timestamp", "/reversal/predict", lambda cj: _body(cj, _set(3, "timestamp", "yesterday")), 422, "timestamp"),
    (
        "impossible date",
        "/reversal/predict",
        lambda cj: _body(cj, _set(3, "timestamp", "2017-02-30T00:00:00Z")),
        422,
        "data[3].timestamp",
    ),  # fmt: skip
    (
        "timestamp a bool",
        "/reversal/predict",
        lambda cj: _body(cj, _set(3, "timestamp", True)),
        422,
        "data[3].timestamp: Input should be a time",
    ),  # fmt: skip
    ("timestamp null", "/reversal/predict", lambda cj: _body(cj, _set(3, "timestamp", None)), 422, "data[3].timestamp"),
    ("unknown version", "/reversal/predict", lambda cj: _body(cj, version="v9.9"), 422, "version: unknown model"),
    ("version wrong type", "/reversal/predict", lambda cj: _body(cj, version=3.1), 422, "version"),
    ("features wrong width", "/reversal/predict", lambda cj: {**PAIR, "features": [[0.1] * 5] * 20}, 422, "needs 12"),
    (
        "features too few rows",
        "/reversal/predict",
        lambda cj: {**PAIR, "features": [[0.1] * 12] * 3},
        422,
        "at least 20",
    ),
    ("features NaN", "/reversal/predict", lambda cj: {**PAIR, "features": [[float("nan")] * 12] * 20}, 422, "finite"),
    ("features flat list", "/reversal/predict", lambda cj: {**PAIR, "features": [0.1] * 12}, 422, "features"),
    ("too many candles", "/reversal/predict", lambda cj: _many(1001), 422, "at most 1000"),
    ("body over 1 MB", "/reversal/predict", lambda cj: b'{"pair": "' + b"x" * 1_100_000 + b'"}', 413, "larger than"),
    ("batch empty", "/reversal/predict/batch", lambda cj: {"items": []}, 422, "items"),
    ("batch not a list", "/reversal/predict/batch", lambda cj: {"items": "x"}, 422, "items"),
    (
        "batch item not an object",
        "/reversal/predict/batch",
        lambda cj: {"items": [1]},
        422,
        "items[0]: Input should be an object",
    ),  # fmt: skip
    (
        "compare unknown version",
        "/reversal/compare",
        lambda cj: _body(cj, versions=["v0"]),
        422,
        "versions: unknown model version",
    ),
    ("legacy empty body", "/predict", lambda cj: b"", 400, "body is empty"),
    ("legacy too few candles", "/predict", lambda cj: {"data": cj(3000, 5)}, 422, "too few candles"),
    # issue 11, finding 7: inputs that reached the database or the model unchecked
    ("user_id NUL", "/reversal/predict", lambda cj: _body(cj, user_id="u\x00"), 422, "must be 1-128 printable"),
    ("userId NUL", "/reversal/predict", lambda cj: _body(cj, userId="\x00"), 422, "userId: must be 1-128 printable"),
    ("user_id newline", "/reversal/predict", lambda cj: _body(cj, user_id="a\nb"), 422, "no control characters"),
    ("user_id tab", "/reversal/predict", lambda cj: _body(cj, user_id="a\tb"), 422, "printable"),
    ("user_id DEL", "/reversal/predict", lambda cj: _body(cj, user_id="a\x7f"), 422, "printable"),
    ("user_id line separator", "/reversal/predict", lambda cj: _body(cj, user_id="a\u2028b"), 422, "printable"),
    ("user_id empty", "/reversal/predict", lambda cj: _body(cj, user_id=""), 422, "user_id"),
    ("user_id blank", "/reversal/predict", lambda cj: _body(cj, user_id="   "), 422, "not blank"),
    ("user_id lone surrogate", "/reversal/predict", lambda cj: _raw_user_id(cj, "\\ud800"), 400, "not valid JSON"),
    ("features 1e300", "/reversal/predict", lambda cj: _features(1e300), 422, "less than or equal to 10000"),
    ("features -1e300", "/reversal/predict", lambda cj: _features(-1e300), 422, "greater than or equal to -10000"),
    ("features 1e30", "/reversal/predict", lambda cj: _features(1e30), 422, "features[19][11]"),
    ("features just over bound", "/reversal/predict", lambda cj: _features(10_000.5), 422, "10000"),
    ("features row of 65", "/reversal/predict", lambda cj: {**PAIR, "features": [[0.1] * 65] * 20}, 422, "at most 64"),
    ("features row a number", "/reversal/predict", lambda cj: {**PAIR, "features": [0.1, [0.1]]}, 422, "features[0]"),
    ("compare features 1e300", "/reversal/compare", lambda cj: _features(1e300), 422, "features[19][11]"),
    ("timestamp after 2262", "/reversal/predict", lambda cj: _stamp(cj, "2300-01-01T00:00:00Z"), 422, "2300-01-01"),
    ("timestamp at ns wrap", "/reversal/predict", lambda cj: _stamp(cj, "2262-04-12T00:00:00Z"), 422, "supported"),
    ("timestamp year 9999", "/reversal/predict", lambda cj: _stamp(cj, "9999-12-31T23:00:00+00:00"), 422, "2100-01-01"),
    ("timestamp 2100", "/reversal/predict", lambda cj: _stamp(cj, "2100-01-01T00:00:00Z"), 422, "data[79].timestamp"),
    ("timestamp before 1970", "/reversal/predict", lambda cj: _stamp(cj, "1969-12-31T23:00:00Z", 0), 422, "data[0]"),
    ("timestamp negative unix", "/reversal/predict", lambda cj: _stamp(cj, -3600, 0), 422, "1970-01-01 to 2100"),
    ("timestamp unix ms after 2100", "/reversal/predict", lambda cj: _stamp(cj, 4.2e12), 422, "supported range"),
    ("high and close 1e308", "/reversal/predict", lambda cj: _spike(cj, high=1e308, close=1e308), 422, "row 40: high"),
    ("low 1e-300", "/reversal/predict", lambda cj: _spike(cj, low=1e-300), 422, "row 40: low 1e-300"),
    ("bar 100x", "/reversal/predict", lambda cj: _spike(cj, factor=100), 422, "more than 10 times"),
    ("bar a hundredth", "/reversal/predict", lambda cj: _spike(cj, factor=0.01), 422, "median close"),
    ("legacy bar 1e308", "/predict", lambda cj: {"data": _spike(cj, high=1e308)["data"]}, 422, "row 40: high"),
    ("compare bar 1e308", "/reversal/compare", lambda cj: _spike(cj, high=1e308), 422, "row 40: high"),
    # finding 4: body limits by route, strictly typed batch items
    ("predict over 256 KiB", "/reversal/predict", lambda cj: _padded(300_000), 413, "262,144 bytes"),
    ("compare over 256 KiB", "/reversal/compare", lambda cj: _padded(300_000), 413, "at most 1,000 candles"),
    ("legacy over 256 KiB", "/predict", lambda cj: _padded(300_000), 413, "this route's limit"),
    ("experiment over 16 KiB", "/reversal/experiments", lambda cj: _padded(20_000), 413, "16,384 bytes"),
    ("outcome over 16 KiB", "/reversal/predictions/x/outcome", lambda cj: _padded(20_000), 413, "small JSON object"),
    ("batch item a list", "/reversal/predict/batch", lambda cj: {"items": [[[[]]]]}, 422, "items[0]: Input should"),
    ("batch nested 5000 deep", "/reversal/predict/batch", lambda cj: b'{"items":' + b"[" * 5000, 400, "not valid JSON"),
    ("batch of empty lists", "/reversal/predict/batch", lambda cj: _lists("items", 100_000), 422, "at most 100"),
    ("data of empty objects", "/reversal/predict", lambda cj: _lists("data", 50_000, b"{}"), 422, "at most 1000"),
]


def _raw_user_id(candle_json, escaped: str) -> bytes:
    """A body whose user_id is the raw JSON string escape `escaped` (json.dumps would refuse a lone surrogate)."""
    return json.dumps(_body(candle_json, user_id="@@")).encode().replace(b'"@@"', f'"{escaped}"'.encode())


def _features(value: float) -> dict:
    rows = [[0.1] * 12 for _ in range(20)]
    rows[19][11] = value
    return {**PAIR, "features": rows}


def _stamp(candle_json, value, row: int = 79) -> dict:
    return _body(candle_json, _set(row, "timestamp", value))


def _spike(candle_json, factor: float | None = None, **prices: float) -> dict:
    """Candles whose bar 40 has these prices, or all four scaled by factor."""

    def fn(rows):
        bar = rows[40]
        if factor is not None:
            for key in ("open", "high", "low", "close"):
                bar[key] *= factor
        bar.update(prices)

    return _body(candle_json, fn)


def _padded(size: int) -> bytes:
    return b'{"pair": "' + b"x" * size + b'"}'


def _lists(field: str, n: int, item: bytes = b"[]") -> bytes:
    """A body whose field is n empty lists (or objects): few bytes, many Python objects once parsed."""
    return b'{"pair": "EUR/USD", "timeframe": "1h", "' + field.encode() + b'": [' + b",".join([item] * n) + b"]}"


def _many(n: int) -> dict:
    base = 1_500_000_000
    rows = [{"timestamp": base + 60 * i, "open": 1.1, "high": 1.2, "low": 1.0, "close": 1.1} for i in range(n)]
    return {**PAIR, "data": rows}


@pytest.mark.parametrize("name,path,build,status,part", BAD, ids=[b[0] for b in BAD])
def test_bad_request(client, candle_json, name, path, build, status, part):
    body = build(candle_json)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, content=content, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    payload = r.json()
    assert_envelope(payload, success=False)
    assert part.lower() in payload["error"].lower(), payload["error"]


def test_bad_path_params(client):
    r = client.get("/reversal/models/v9.9")
    assert r.status_code == 404 and "configured versions" in r.json()["error"]
    r = client.post("/reversal/models/v9.9/switch")
    assert r.status_code == 404
    assert_envelope(r.json(), success=False)
    r = client.get("/reversal/predict")
    assert r.status_code == 405
    assert_envelope(r.json(), success=False)


def test_bad_requests_table_is_large_enough():
    assert len(BAD) >= 75  # 39 before issue 11; its hostile inputs added 38
