"""Issue 29, item 12, against `bentoml serve` on PostgreSQL: a database that refuses connections for 30 s.

Before: trusted predicts stayed 200 but the evaluation rows of the outage were dropped (40,659 under
load at concurrency 4). Now each worker spools them on disk and writes them when the database answers.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from experiments.schema import eval_bars, eval_decisions
from tests.integration.fault_tools import fault_db, wait_healthy  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
pytest_plugins = ["tests.conftest_pg"]

TOKEN = "outage-outcome-token-0123456789abcdefghij"
FIRST, OUTAGE_S = 200, 30.0


def served_total(db_url: str) -> int:
    engine = create_engine(db_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            stmt = select(func.coalesce(func.sum(eval_decisions.c.served), 0)).select_from(
                eval_decisions.join(eval_bars, eval_bars.c.id == eval_decisions.c.bar_id)
            )
            return int(conn.execute(stmt).scalar_one())
    except Exception:  # noqa: BLE001 - refused while down
        return -1
    finally:
        engine.dispose()


def counter(url: str, prefix: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def dropped(url: str) -> float:
    return counter(url, "aifx_evaluation_rows_dropped_total{")


def test_rows_of_a_30_s_refusal_are_all_written_afterwards(launch, tmp_path, candle_json, fault_db):  # noqa: F811
    db_url, available = fault_db
    server = launch(tmp_path, AIFX_OUTCOME_TOKEN=TOKEN, AIFX_DATABASE_URL=db_url, AIFX_RESOLVE_EVERY_SECONDS="1")
    acked: list[int] = []
    lock, stop = threading.Lock(), threading.Event()

    def client(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            t = FIRST + offset
            while not stop.is_set() and t < FIRST + 5_000:
                body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(t + 1, 64)}
                try:
                    status = c.post("/reversal/predict", json=body).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    acked.append(status)
                t += 4

    try:
        wait_healthy(server.url)
        before = dropped(server.url)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for th in threads:
            th.start()
        time.sleep(3)
        available(False)
        time.sleep(OUTAGE_S)
        available(True)
        time.sleep(3)
        stop.set()
        for th in threads:
            th.join(timeout=30)
        ok = acked.count(200)
        assert ok > 100 and ok == len(acked), f"{len(acked) - ok} of {len(acked)} predicts failed"
        deadline = time.monotonic() + 90  # the write-behind rests up to 30 s after failures, then replays
        while served_total(db_url) < ok and time.monotonic() < deadline:
            time.sleep(1)
        assert served_total(db_url) == ok  # every trusted predict of the outage is in the evaluation log
        assert dropped(server.url) == before  # none counted as dropped
        assert counter(server.url, "aifx_evaluation_rows_spooled_total") > 0  # the outage did refuse writes
    finally:
        stop.set()
        server.stop()
