"""Exact experiment counts against a real `bentoml serve` with 2 API workers, across a restart.

Issue 4, acceptance 5: 4,000 predictions from 1,000 users at concurrency 32 give metrics whose counts
equal the number of 200 responses exactly, each user sees one variant, and the same metrics come back
after a restart (same database). A smaller run does the same on PostgreSQL (never skipped in CI).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from experiments import assign_variant

pytestmark = pytest.mark.integration
pytest_plugins = ["tests.conftest_pg"]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "exact-admin-token-0123456789abcdef"  # at least 32 characters
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}
SPLIT = 0.3
CONCURRENCY = 32


@dataclass(frozen=True)
class Served:
    """One predict call: who asked, the HTTP status and the response data (None unless 200)."""

    user: str
    status: int
    data: dict[str, Any] | None


def two_worker_config(workdir: Path) -> str:
    """configuration.yaml with exactly 2 ReversalEngine workers (acceptance 5), whatever the default is."""
    config = yaml.safe_load((ROOT / "configuration.yaml").read_text())
    config["services"]["ReversalEngine"]["workers"] = 2
    path = workdir / "two-workers.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def api_workers(server) -> int:
    """How many ReversalEngine worker processes the server runs."""
    children = psutil.Process(server.proc.pid).children(recursive=True)
    return sum("ReversalEngine" in " ".join(p.cmdline()) for p in children)


def ok(r: httpx.Response, status: int = 200) -> Any:
    """The envelope's data after checking status and envelope."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is True and body["error"] is None
    return body["data"]


def start_experiment(url: str) -> tuple[str, str]:
    """Create and activate a v3.0 (A) vs v3.1 (B) experiment through the admin routes; (id, secret salt)."""
    eid = f"exact-{uuid.uuid4().hex[:8]}"
    spec = {"experiment_id": eid, "name": "exactness", "variant_a": "v3.0", "variant_b": "v3.1"}
    body = {**spec, "traffic_split": SPLIT}
    assert httpx.post(f"{url}/reversal/experiments", json=body, timeout=30).status_code == 401
    salt = ok(httpx.post(f"{url}/reversal/experiments", json=body, headers=ADMIN, timeout=30), 201)["salt"]
    assert salt != eid  # a random secret, not derivable from the id
    assert ok(httpx.post(f"{url}/reversal/experiments/{eid}/activate", headers=ADMIN, timeout=30))["active"]
    return eid, salt


def bodies(users: int, per_user: int, windows: list[list[dict]]) -> list[tuple[str, bytes]]:
    """(user, JSON body) per call, users interleaved; encoded up front to keep the client's CPU low."""
    encoded = [json.dumps({**PAIR, "data": w})[:-1] for w in windows]
    users_of = [f"user-{k % users}" for k in range(users * per_user)]
    return [(u, f'{encoded[k % len(encoded)]}, "user_id": "{u}"}}'.encode()) for k, u in enumerate(users_of)]


async def blast(url: str, users: int, per_user: int, windows: list[list[dict]]) -> list[Served]:
    """users x per_user predictions from CONCURRENCY concurrent callers."""
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for job in bodies(users, per_user, windows):
        queue.put_nowait(job)
    out: list[Served] = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers) as client:

        async def caller() -> None:
            while not queue.empty():
                user, content = queue.get_nowait()
                r = await client.post("/reversal/predict", content=content)
                out.append(Served(user, r.status_code, r.json()["data"] if r.status_code == 200 else None))

        await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return out


def metrics_of(url: str, eid: str) -> dict[str, Any]:
    return ok(httpx.get(f"{url}/reversal/experiments/{eid}/metrics", timeout=30))


def check_exact(served: list[Served], metrics: dict[str, Any], eid: str, salt: str) -> None:
    """Counts, signals and confidence per variant equal what the 200 responses say; one variant per user."""
    answered = [s for s in served if s.status == 200]
    assert len(answered) == len(served), Counter(s.status for s in served)
    assert len({s.data["prediction_id"] for s in answered}) == len(answered)  # type: ignore[index]
    variants_of: dict[str, set[str]] = defaultdict(set)
    for s in answered:
        assert s.data is not None and s.data["experiment_id"] == eid
        variants_of[s.user].add(s.data["variant"])
        assert s.data["model_version"] == {"A": "v3.0", "B": "v3.1"}[s.data["variant"]]
    assert all(len(v) == 1 for v in variants_of.values())
    assert all(v == {assign_variant(salt, u, SPLIT)} for u, v in variants_of.items())
    for variant in ("A", "B"):
        mine = [s.data for s in answered if s.data["variant"] == variant]  # type: ignore[index]
        got = metrics["variants"][variant]["metrics"]
        assert got["count"] == len(mine) > 0
        assert got["signals"] == {sig: sum(d["signal"] == sig for d in mine) for sig in ("long", "short", "hold")}
        assert got["avg_confidence"] == pytest.approx(sum(d["confidence"] for d in mine) / len(mine), rel=1e-9)


def record_outcomes(url: str, served: list[Served], n: int) -> None:
    """Realized pips for the first n predictions."""
    for i, s in enumerate(served[:n]):
        assert s.data is not None
        path = f"{url}/reversal/predictions/{s.data['prediction_id']}/outcome"
        r = httpx.post(path, json={"pips": i % 9 - 4.0}, headers=ADMIN)  # the admin token is an outcome token too
        assert r.status_code == 201, r.text


def rounded(value: Any) -> Any:
    """Floats rounded to 9 significant digits, recursively (SUM order may differ in the last bits)."""
    if isinstance(value, float):
        return float(f"{value:.9g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def run_exactness(launch, workdir: Path, users: int, per_user: int, windows: list, **env: str) -> dict[str, float]:
    """The whole scenario; returns phase durations in seconds."""
    times: dict[str, float] = {}
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"AIFX_ADMIN_TOKEN": TOKEN, "BENTOML_CONFIG": two_worker_config(workdir), **env}
    t0 = time.monotonic()
    server = launch(workdir, **env)
    try:
        times["start"] = time.monotonic() - t0
        assert api_workers(server) == 2
        eid, salt = start_experiment(server.url)
        t1 = time.monotonic()
        served = asyncio.run(blast(server.url, users, per_user, windows))
        times["predictions"] = time.monotonic() - t1
        before = metrics_of(server.url, eid)
        check_exact(served, before, eid, salt)
        record_outcomes(server.url, served, 60)
        before = metrics_of(server.url, eid)
        assert sum(before["variants"][v]["metrics"]["outcomes"]["count"] for v in ("A", "B")) == 60
    finally:
        server.stop()
    t2 = time.monotonic()
    server = launch(workdir, **env)
    try:
        times["restart"] = time.monotonic() - t2
        after = metrics_of(server.url, eid)
        assert rounded(after) == rounded(before)
        assert after["active"] is True
        again = asyncio.run(blast(server.url, 1, 1, windows))[0]
        before_restart = next(s for s in served if s.user == again.user and s.data is not None)
        assert again.data is not None and again.data["variant"] == before_restart.data["variant"]  # type: ignore[index]
        counts = {v: metrics_of(server.url, eid)["variants"][v]["metrics"]["count"] for v in ("A", "B")}
        assert counts[again.data["variant"]] == before["variants"][again.data["variant"]]["metrics"]["count"] + 1
    finally:
        server.stop()
    return times


@pytest.fixture(scope="module")
def windows(candle_json) -> list[list[dict]]:
    """A few distinct candle windows (60 bars, above every test version's minimum)."""
    return [candle_json(3000 + 37 * i, 60) for i in range(16)]


def test_exact_counts_with_two_workers_and_a_restart(launch, tmp_path, windows):
    times = run_exactness(launch, tmp_path / "sqlite", users=1000, per_user=4, windows=windows)
    print(f"sqlite exactness timings: {times}")


@pytest.mark.postgres
def test_exact_counts_on_postgresql(launch, tmp_path, windows, pg_url):
    times = run_exactness(launch, tmp_path / "pg", users=200, per_user=4, windows=windows, AIFX_DATABASE_URL=pg_url)
    print(f"postgresql exactness timings: {times}")
