"""Issue 25, item 5, in-process: every query parameter out of range is a 422 in the envelope, never a 500.

A `since` must be a time in [1970-01-01T00:00:00Z, 2100-01-01T00:00:00Z] once in UTC (naive means UTC);
year 1 at +01:00 or year 9999 at -14:00 used to raise OverflowError on the conversion (a 500), and the
read's failure paused the evaluation log's writes, whose rows were then dropped.
"""

from __future__ import annotations

from typing import Any

import pytest

from experiments.schema import ID_LEN

pytestmark = pytest.mark.http

# Every GET route with query parameters, with what else it needs to answer 200.
SINCE_ROUTES = [
    ("/reversal/models", {}),
    ("/reversal/models/v3.1", {}),
    ("/reversal/evaluation", {"a": "v3.1", "b": "v3.0"}),
    ("/reversal/decisions", {}),
]
PAIR_ROUTES = SINCE_ROUTES[:3]  # the routes that filter by pair and timeframe

BAD_TIMES = [
    "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:30:00+01:00",  # 1969 in UTC
    "2101-01-01T00:00:00Z",
    "2100-01-01T00:00:01Z",
    "yesterday",
    "2024-13-45T00:00:00Z",
    "2024-01-01T00:00:00+25:00",
    "",
    "9" * 5000,
]
GOOD_TIMES = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00",  # naive: UTC
    "2024-01-01T05:00:00+05:00",
    "1970-01-01T00:00:00Z",
    "2100-01-01T00:00:00Z",
    "2100-01-01T13:59:59+14:00",  # 2099-12-31T23:59:59Z
]


def parts() -> Any:
    from aifx.http.bootstrap import app

    return app.state.parts


def assert_422(r: Any, parameter: str) -> str:
    """A 422 in the service's error envelope naming the parameter; its message."""
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["success"] is False and body["data"] is None, body
    assert isinstance(body["timestamp"], str) and body["timestamp"], body
    assert body["request_id"] == r.headers["X-Request-ID"], body
    assert parameter in body["error"], body
    return str(body["error"])


@pytest.mark.parametrize("value", BAD_TIMES)
@pytest.mark.parametrize(("path", "params"), SINCE_ROUTES)
def test_a_since_out_of_range_is_a_422_naming_it_with_the_range(client, path, params, value):
    message = assert_422(client.get(path, params={**params, "since": value}), "since")
    assert "1970-01-01T00:00:00Z" in message and "2100-01-01T00:00:00Z" in message, message


@pytest.mark.parametrize("value", GOOD_TIMES)
@pytest.mark.parametrize(("path", "params"), SINCE_ROUTES)
def test_a_since_in_range_is_answered(client, path, params, value):
    r = client.get(path, params={**params, "since": value})
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2024-01-01T05:00:00+05:00", "2024-01-01T00:00:00+00:00"),
        ("2024-01-01T00:00:00", "2024-01-01T00:00:00+00:00"),
        ("2100-01-01T13:59:59+14:00", "2099-12-31T23:59:59+00:00"),
    ],
)
def test_a_since_reaches_the_filters_in_utc(client, value, utc):
    r = client.get("/reversal/models/v3.1", params={"since": value})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["live"]["filters"]["since"] == utc
    r = client.get("/reversal/evaluation", params={"a": "v3.1", "b": "v3.0", "since": value})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["filters"]["since"] == utc


@pytest.mark.parametrize("value", ["0", "1001", "-1", "abc", "1.5", "1e3", "", str(10**30)])
def test_a_decision_limit_out_of_range_is_a_422(client, value):
    message = assert_422(client.get("/reversal/decisions", params={"limit": value}), "limit")
    assert "limit:" in message, message


@pytest.mark.parametrize("value", ["1", "1000"])
def test_a_decision_limit_in_range_is_answered(client, value):
    r = client.get("/reversal/decisions", params={"limit": value})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["data"]["decisions"], list)


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("pair", "E" * 33), ("pair", "EUR/USD" * 2000), ("timeframe", "1" * 9), ("timeframe", "h" * 5000)],
)
@pytest.mark.parametrize(("path", "params"), PAIR_ROUTES)
def test_a_pair_or_timeframe_too_long_is_a_422(client, path, params, parameter, value):
    assert_422(client.get(path, params={**params, parameter: value}), parameter)


@pytest.mark.parametrize("parameter", ["a", "b"])
def test_a_version_too_long_is_a_422(client, parameter):
    params = {"a": "v3.1", "b": "v3.0", parameter: "v" * (ID_LEN + 1)}
    assert_422(client.get("/reversal/evaluation", params=params), parameter)


@pytest.mark.parametrize(("path", "params"), PAIR_ROUTES)
def test_bounded_pair_and_timeframe_are_answered(client, path, params):
    r = client.get(path, params={**params, "pair": "EUR/USD", "timeframe": "1h"})
    assert r.status_code == 200, r.text


def test_bad_queries_leave_the_evaluation_writes_running(client):
    for path, params in SINCE_ROUTES:
        for value in BAD_TIMES[:2]:
            assert client.get(path, params={**params, "since": value}).status_code == 422
    with parts().outcomes.backoff:  # DatabaseResting here would mean queued rows are being dropped
        pass
