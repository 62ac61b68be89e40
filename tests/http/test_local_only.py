"""Issue 29, item 1: without tokens the admin and outcome routes answer local callers under local names only.

An attacker on the network (a non-loopback peer), a local proxy forwarding for one, and a web page
that rebinds its DNS name to 127.0.0.1 (loopback peer, foreign Host) all get 403 and change nothing.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator

import pytest

from aifx.http import app as app_module
from aifx.settings import Settings

REMOTE = ("192.0.2.7", 40000)
LOCAL = ("127.0.0.1", 40000)
OUTCOME = "/reversal/predictions/00000000-0000-0000-0000-000000000000/outcome"
REBINDING = {"Host": "evil.example:3000", "Origin": "http://evil.example:3000", "Sec-Fetch-Site": "same-origin"}


def open_client(peer: tuple[str, int], base_url: str = "http://localhost", **settings) -> Iterator:
    """A TestClient from peer over an app without tokens that shares the session's parts."""
    from starlette.testclient import TestClient

    from aifx.http.bootstrap import app

    opened = app_module.create_app(Settings(versions=("v3.1", "v3.0", "v2.9"), **settings))
    opened.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with TestClient(opened, base_url=base_url, client=peer) as c:
            yield c


@pytest.fixture
def remote(client) -> Iterator:
    yield from open_client(REMOTE)


@pytest.fixture
def local(client) -> Iterator:
    yield from open_client(LOCAL)


def writes(eid: str) -> list[tuple[str, str, dict | None]]:
    """Every kind of tokenless write an attacker wants: switch, experiment, policy, candles, outcome, erasure."""
    return [
        ("POST", "/reversal/models/v3.0/switch", None),
        (
            "POST",
            "/reversal/experiments",
            {"experiment_id": eid, "name": "x", "variant_a": "v3.0", "variant_b": "v3.1", "traffic_split": 0.5},
        ),  # fmt: skip
        ("POST", "/reversal/models/reload", None),
        ("PUT", "/reversal/promotion/v3.0", {"mode": "manual"}),
        ("POST", "/reversal/candles", {"pair": "EUR/USD", "timeframe": "1h", "data": []}),
        ("POST", OUTCOME, {"pips": 1.0}),
        ("DELETE", "/reversal/users/someone/predictions", None),
    ]


def state(c) -> tuple:
    data = c.get("/reversal/models").json()["data"]
    return data["active_version"], c.get("/reversal/experiments").json()["data"]["active_experiment_id"]


@pytest.mark.http
def test_a_network_caller_gets_403_on_every_write_and_changes_nothing(remote, client):
    before = state(client)
    eid = f"net-{uuid.uuid4().hex[:8]}"
    for method, path, body in writes(eid):
        r = remote.request(method, path, json=body)
        assert r.status_code == 403, (path, r.text)
        assert "loopback clients" in r.json()["error"] and "AIFX_" in r.json()["error"], r.text
    assert state(client) == before
    assert client.get(f"/reversal/experiments/{eid}/metrics").status_code == 404


@pytest.mark.http
def test_reads_and_predictions_stay_open_to_the_network(remote, candle_json):
    body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(3200, 80)}
    assert remote.get("/reversal/models").status_code == 200
    assert remote.post("/reversal/predict", json=body).status_code == 200


@pytest.mark.http
def test_a_dns_rebinding_page_gets_403(local, client):
    """A foreign name resolved to 127.0.0.1: loopback peer, same-origin by the browser's account."""
    before = state(client)
    for method, path, body in writes(f"dns-{uuid.uuid4().hex[:8]}"):
        r = local.request(method, path, json=body, headers=REBINDING)
        assert r.status_code == 403, (path, r.text)
    assert state(client) == before
    r = local.post("/reversal/models/v3.0/switch", headers={"Host": "evil.example"})  # no browser headers
    assert r.status_code == 403 and "AIFX_ALLOWED_HOSTS" in r.json()["error"], r.text


@pytest.mark.http
def test_a_forwarded_request_through_a_local_proxy_is_not_local(local, client):
    """A reverse proxy on this machine forwards network clients: without AIFX_TRUSTED_PROXIES it is not local."""
    before = state(client)
    for spoof in ({"X-Forwarded-For": "127.0.0.1"}, {"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=1.2.3.4"}):
        r = local.post("/reversal/models/v3.0/switch", headers=spoof)
        assert r.status_code == 403 and "loopback" in r.json()["error"], r.text
    assert state(client) == before


@pytest.mark.http
def test_a_forwarded_request_is_never_local_even_from_a_trusted_proxy(client):
    """Without tokens only direct local callers are trusted: a proxy's clients are elsewhere, whatever they claim."""
    for c in open_client(LOCAL, trusted_proxies=("127.0.0.1",)):
        for forwarded in ("127.0.0.1, 198.51.100.4", "::1"):
            r = c.post("/reversal/models/v3.0/switch", headers={"X-Forwarded-For": forwarded})
            assert r.status_code == 403, r.text


@pytest.mark.http
def test_allowed_hosts_can_name_the_machine(client):
    for c in open_client(LOCAL, base_url="http://aifx.internal:3000", allowed_hosts=("aifx.internal",)):
        assert c.post("/reversal/models/v3.1/switch").status_code == 200
    for c in open_client(LOCAL, base_url="http://aifx.internal:3000"):
        assert c.post("/reversal/models/v3.1/switch").status_code == 403
