"""A PostgreSQL that accepts connections and never answers: the service starts, serves and stays live."""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration
PAIR = {"pair": "EUR/USD", "timeframe": "1h"}


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def test_a_blackholed_database_costs_plain_predictions_nothing(server_factory, candle_json, blackhole):
    url = f"postgresql+psycopg://aifx@127.0.0.1:{blackhole}/aifx"
    t0 = time.monotonic()
    server = server_factory(AIFX_DATABASE_URL=url)  # waits until /health is 200 with both stages
    started = time.monotonic() - t0
    assert httpx.get(f"{server.url}/livez", timeout=5).status_code == 200
    latencies = []
    with httpx.Client(timeout=10) as client:
        for i in range(300):
            body = {**PAIR, "data": candle_json(3000 + 3 * i, 80)}
            if i % 3 == 0:
                body["user_id"] = f"user-{i}"  # would be assigned if an experiment could be read
            t = time.monotonic()
            r = client.post(f"{server.url}/reversal/predict", json=body)
            latencies.append(time.monotonic() - t)
            assert r.status_code == 200, r.text
            assert r.json()["data"]["model_version"] == "v3.1" and "prediction_id" not in r.json()["data"]
            if i % 50 == 0:
                assert client.get(f"{server.url}/livez").status_code == 200
        r = client.get(f"{server.url}/reversal/experiments")
        assert r.status_code == 503 and "database" in r.json()["error"]
    p99 = float(np.percentile(latencies, 99))
    print(
        f"started in {started:.1f} s; predictions p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms"
    )
    assert p99 < 1.0, sorted(latencies)[-5:]
