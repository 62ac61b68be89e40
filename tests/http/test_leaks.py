"""Issue 11, finding 9: anonymous callers never see database driver lines or stage exception text.

Every 5xx message says which component failed and what to do (retry later), plus an error id; the
server log line with that id (and the request id) carries the detail.
"""

from __future__ import annotations

import logging
import re
import uuid
import warnings
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import OperationalError

from runners.stage import StageRunner

pytestmark = pytest.mark.http

PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
# What a PostgreSQL driver says when it cannot connect: host, address, port, database and user.
DRIVER_LINE = (
    'connection to server at "db-secret.internal" (10.9.8.7), port 6543 failed: '
    'FATAL:  password authentication failed for user "secretuser" database "secretdb"'
)
INTERNALS = ("db-secret", "10.9.8.7", "6543", "secretuser", "secretdb", "FATAL", "OperationalError")
STAGE_SECRET = "/srv/secret-models/stage1.tflite: bad magic at 10.9.8.7:3001"
ERROR_ID = re.compile(r"error id ([0-9a-f]{8})")


def parts():
    from aifx.http.bootstrap import app

    return app.state.parts


def driver_error() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception(DRIVER_LINE + "\nDETAIL: second line"))


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every aifx log line of the test, with its traceback when it has one."""
    formatter = logging.Formatter()
    return [formatter.format(rec) for rec in caplog.records if rec.name.startswith("bentoml.aifx")]


def assert_hidden(response, status: int, component: str, request_id: str, caplog, detail: str) -> None:
    """Generic message (component, retry later, error id) to the client; the log has the id and the detail."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert component in error and "retry later" in error, error
    match = ERROR_ID.search(error)
    assert match, error
    for secret in (*INTERNALS, "secret", detail):
        assert secret not in ERROR_ID.sub("", error), (secret, error)
    lines = [line for line in logged(caplog) if match.group(1) in line]
    assert lines, logged(caplog)
    assert any(detail in line and f"[request {request_id}]" in line for line in lines), lines
    assert response.json()["request_id"] == request_id


@pytest.fixture
def capture(caplog) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="bentoml.aifx"):
        yield caplog


def test_experiment_database_errors_show_no_driver_line(client, monkeypatch, capture):
    def down() -> list:
        raise driver_error()

    monkeypatch.setattr(parts().ab.store, "list_experiments", down)
    r = client.get("/reversal/experiments", headers={"X-Request-ID": "leak-db-1"})
    assert_hidden(r, 503, "experiment database is unavailable", "leak-db-1", capture, "db-secret.internal")


def test_an_unrecorded_prediction_shows_no_driver_line(client, candle_json, monkeypatch, capture):
    """The predict path's database error (recorded in a worker thread) is hidden the same way."""
    eid = f"leak-{uuid.uuid4().hex[:8]}"
    spec = {"experiment_id": eid, "name": "leak", "variant_a": "v3.0", "variant_b": "v3.1"}
    assert client.post("/reversal/experiments", json=spec).status_code == 201
    assert client.post(f"/reversal/experiments/{eid}/activate").status_code == 200
    try:

        def down(*args: object, **kwargs: object) -> str:
            raise driver_error()

        monkeypatch.setattr(parts().ab.store, "record_predictions", down)
        body = {**PAIR, "data": candle_json(3000, 80), "user_id": "leak-user"}
        r = client.post("/reversal/predict", json=body, headers={"X-Request-ID": "leak-db-2"})
        assert_hidden(r, 503, "experiment database is unavailable", "leak-db-2", capture, "db-secret.internal")
    finally:
        monkeypatch.undo()
        client.post(f"/reversal/experiments/{eid}/stop")


def test_a_failed_switch_shows_no_driver_line(client, monkeypatch, capture):
    registry = parts().registry

    def down(version: str) -> None:
        raise driver_error()

    monkeypatch.setattr(registry, "_write_active", down)
    r = client.post("/reversal/models/v3.1/switch", headers={"X-Request-ID": "leak-switch"})
    assert_hidden(r, 503, "state database is unavailable", "leak-switch", capture, "db-secret.internal")


def test_a_stage_exception_shows_no_exception_text(client, candle_json, monkeypatch, capture):
    def broken(self, windows):
        raise RuntimeError(STAGE_SECRET)

    monkeypatch.setattr(StageRunner, "score", broken)
    r = client.post("/reversal/predict", json={**PAIR, "data": candle_json(3000, 80)}, headers={"X-Request-ID": "lk-1"})
    assert_hidden(r, 503, "stage1", "lk-1", capture, STAGE_SECRET)
    assert "RuntimeError" not in r.json()["error"]


def test_an_unexpected_error_is_500_with_an_error_id_only(client, monkeypatch, capture):
    from starlette.testclient import TestClient

    from aifx.http.app import create_app
    from aifx.settings import Settings

    app = create_app(Settings(versions=("v3.1", "v3.0", "v2.9")))
    app.state.parts = parts()

    async def broken(*_: object) -> dict:
        raise KeyError(STAGE_SECRET)

    monkeypatch.setattr(parts().registry, "active_version", broken)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(app, raise_server_exceptions=False) as c:
            r = c.get("/reversal/models", headers={"X-Request-ID": "lk-500"})
    assert r.status_code == 500
    error = r.json()["error"]
    assert error.startswith("internal error") and STAGE_SECRET not in error and "KeyError" not in error
    eid = ERROR_ID.search(error)
    assert eid, error
    assert any(eid.group(1) in line and STAGE_SECRET in line for line in logged(capture)), logged(capture)
