"""Issue 29, item 2: the rate limit cannot be escaped by random bearers or forwarded headers, on every route."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import pytest

from aifx.http import app as app_module
from aifx.http.native import NativeGuards
from aifx.settings import Settings

TOKEN = "rate-keys-admin-token-0123456789abcdefgh"
LIMITED = {"rate_limit_per_second": 1.0, "rate_limit_burst": 2}


@pytest.fixture
def client(client):
    """The session client, after one request: start-up's own state reads are done before another loop shares them."""
    assert client.get("/reversal/models").status_code == 200
    return client


def limited_client(**settings: object):
    from starlette.testclient import TestClient

    from aifx.http.bootstrap import app

    limited = app_module.create_app(Settings(versions=("v3.1", "v3.0", "v2.9"), **LIMITED, **settings))  # type: ignore[arg-type]
    limited.state.parts = app.state.parts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TestClient(limited, base_url="http://localhost", client=("192.0.2.30", 1))


@pytest.mark.http
def test_random_bearers_get_429_like_anonymous_requests(client):
    with limited_client(admin_token=TOKEN) as c:
        anonymous = [c.get("/reversal/models").status_code for _ in range(20)]
    with limited_client(admin_token=TOKEN) as c:
        headers = [{"Authorization": f"Bearer {uuid.uuid4().hex * 2}"} for _ in range(20)]
        random = [c.get("/reversal/models", headers=h).status_code for h in headers]
    assert anonymous.count(429) >= 17 and random.count(429) >= 17, (anonymous, random)


@pytest.mark.http
def test_the_valid_token_has_its_own_bucket(client):
    with limited_client(admin_token=TOKEN) as c:
        while c.get("/reversal/models").status_code != 429:
            pass
        assert c.get("/reversal/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.http
def test_forwarded_for_from_an_untrusted_peer_does_not_escape(client):
    with limited_client() as c:
        codes = [c.get("/reversal/models", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(20)]  # fmt: skip
    assert codes.count(429) >= 17, codes
    with limited_client(trusted_proxies=("192.0.2.30",)) as c:  # our proxy: each forwarded client its own
        codes = [c.get("/reversal/models", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                 for i in range(20)]  # fmt: skip
    assert codes == [200] * 20


@pytest.mark.unit
@pytest.mark.parametrize("path", ["/metrics", "/docs.json", "/schema.json", "/"])
def test_bentoml_own_routes_are_limited(path):
    """NativeGuards, the service middleware in front of BentoML's app, limits its routes too (not probes)."""
    settings = Settings(**LIMITED)  # type: ignore[arg-type]
    statuses: list[int] = []

    async def bento(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def call(guards: NativeGuards, p: str) -> None:
        async def send(message):
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "path": p, "method": "GET", "headers": [], "client": ("192.0.2.1", 1)}
        await guards(scope, lambda: None, send)

    guards = NativeGuards(bento, app_module.create_app(settings))  # that REST app's rate limit
    for _ in range(5):
        asyncio.run(call(guards, path))
    assert statuses == [200, 200, 429, 429, 429]
    statuses.clear()
    for _ in range(5):
        asyncio.run(call(guards, "/readyz"))
    assert statuses == [200] * 5  # probes are never throttled
