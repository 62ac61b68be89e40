"""A real Prometheus scrapes a running service every second (`live_url` or `launch`); we read it back."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from aifx_client import AIFXClient
from monitoring.names import (
    RULES,
    SYNTHETIC,
    dashboard_exprs,
    dashboard_names,
    declared_names,
    exposition_names,
    promql_selectors,
    recorded_names,
    rule_names,
)
from monitoring.names import rules as alert_rules

pytestmark = pytest.mark.integration

T = TypeVar("T")
WAIT = 60.0
# Series any serving instance exposes after a few predictions.
ALWAYS_LIVE = {
    "aifx_predictions_total",
    "aifx_stage1_probability_bucket",
    "aifx_confidence_sum",
    "aifx_confidence_count",
    "aifx_active_version",
    "aifx_version_loaded",
    "aifx_training_base_rate",
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds_bucket",
}
# Labels that say which service and route export a series: a selector whose values for them match no
# live series reads nothing (one service exports them: runner_name="ReversalEngine").
SOURCE_LABELS = ("runner_name", "endpoint")


@pytest.fixture(scope="module")
def aifx_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """conftest's `live_url` when it provides one, else a server of our own from its `launch` fixture."""
    try:
        return request.getfixturevalue("live_url")
    except pytest.FixtureLookupError:
        launch = request.getfixturevalue("launch")
    server = launch(tmp_path_factory.mktemp("aifx-live"))
    request.addfinalizer(server.stop)
    return server.url


@dataclass
class Prometheus:
    """A Prometheus server on 127.0.0.1 and its HTTP API."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path> and return `data` (fails with Prometheus's error)."""
        body = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the result vector."""
        return self.api("query", query=expr)["result"]

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T | None], what: str, timeout: float = WAIT) -> T:
    """Poll until check() returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def write_config(folder: Path, target: str) -> Path:
    """monitoring/prometheus.yml's job, scraping `target` every second, with the real rules."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "aifx-reversal-engine", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}
        ],
    }
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if Prometheus does not exit in 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def prometheus(aifx_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """Prometheus scraping the live service every second; killed at the end of the module."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("the `prometheus` binary is not on PATH: install it (Debian: apt-get install prometheus)")
    target = urlsplit(aifx_url).netloc
    assert target.startswith("127.0.0.1:"), f"the service URL must be on 127.0.0.1, got {aifx_url}"
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={write_config(folder, target)}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    prom = Prometheus(proc, f"http://127.0.0.1:{port}", log)
    try:
        wait_for(lambda: _ready(prom), "Prometheus to be ready")
        yield prom
    finally:
        stop(proc)


def _ready(prom: Prometheus) -> bool:
    if prom.proc.poll() is not None:
        raise AssertionError(f"prometheus exited with {prom.proc.returncode}:\n{prom.log_tail()}")
    try:
        return httpx.get(f"{prom.url}/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def total_predictions(prom: Prometheus) -> float:
    """sum(aifx_predictions_total) as Prometheus sees it now (0 before the first prediction)."""
    result = prom.query("sum(aifx_predictions_total)")
    return float(result[0]["value"][1]) if result else 0.0


def test_prometheus_scrapes_the_service(prometheus: Prometheus, aifx_url: str) -> None:
    def target_up() -> dict[str, Any] | None:
        targets = prometheus.api("targets")["activeTargets"]
        return next((t for t in targets if t["health"] == "up"), None)

    target = wait_for(target_up, "the AIFX target to be up")
    assert target["labels"]["job"] == "aifx-reversal-engine" and target["scrapeUrl"] == f"{aifx_url}/metrics"


def test_predictions_are_counted_through_the_query_api(prometheus: Prometheus, aifx_url: str, candle_json) -> None:
    wait_for(lambda: prometheus.query("up") or None, "a first scrape")
    before = total_predictions(prometheus)
    with AIFXClient(aifx_url, enabled=True, timeout=30) as client:
        active = client.models().active_version
        signals = [client.predict("EUR/USD", "1h", data=candle_json(4000 + 11 * i, 80)).signal for i in range(5)]
    wait_for(lambda: total_predictions(prometheus) >= before + 5, "aifx_predictions_total to grow by 5")
    by_version = prometheus.query("sum by (version, signal) (aifx_predictions_total)")
    served = {(s["metric"]["version"], s["metric"]["signal"]) for s in by_version}
    assert {(active, s) for s in signals} <= served


def test_rules_load_and_evaluate_on_live_data(prometheus: Prometheus) -> None:
    def evaluated() -> list[dict[str, Any]] | None:
        rules = [r for g in prometheus.api("rules")["groups"] for r in g["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_for(evaluated, "every rule to be evaluated once")
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert broken == {}
    assert {r["name"] for r in rules if r["type"] == "recording"} == recorded_names()
    increase = wait_for(lambda: prometheus.query("aifx:predictions:increase1h"), "aifx:predictions:increase1h")
    assert all(s["metric"].get("version") for s in increase)


def live_series(text: str) -> dict[str, list[dict[str, str]]]:
    """The label sets of every sample in a text exposition, by sample name."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append(sample.labels)
    return series


def selects(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    """Whether a label set satisfies the = and =~ matchers on SOURCE_LABELS."""
    for label, op, want in matchers:
        got = labels.get(label, "")
        if label in SOURCE_LABELS and ((op == "=" and got != want) or (op == "=~" and not re.fullmatch(want, got))):
            return False
    return True


def test_rules_and_dashboard_read_only_live_series(aifx_url: str, candle_json) -> None:
    """Dashboards and rules may use only series a live /metrics has (after a prediction, trusted candles and a
    signal subscriber: the per-series signal metrics exist once a pair and timeframe has had them)."""
    with AIFXClient(aifx_url, enabled=True, timeout=30) as client:
        client.predict("EUR/USD", "1h", data=candle_json(4200, 80))
    stream = {"pair": "EUR/USD", "timeframe": "1h"}
    with httpx.stream("GET", f"{aifx_url}/reversal/signals/stream", params=stream, timeout=10) as r:
        assert r.status_code == 200, r.read()
        posted = httpx.post(f"{aifx_url}/reversal/candles", json={**stream, "data": candle_json(4300, 80)}, timeout=30)
        assert posted.status_code == 200, posted.text
        next(r.iter_lines())  # the first event (or keep-alive): the subscriber was counted
    text = httpx.get(f"{aifx_url}/metrics", timeout=10).text
    live = exposition_names(text)
    assert ALWAYS_LIVE <= live, f"not exposed: {sorted(ALWAYS_LIVE - live)}"
    derived = recorded_names() | SYNTHETIC
    unknown = sorted((rule_names() | dashboard_names()) - derived - live)
    assert unknown == [], f"read by the rules or the dashboard, not exposed by {aifx_url}/metrics: {unknown}"
    # The unit tests check against the names declared in code and BENTOML_METRICS: keep those true.
    assert sorted(declared_names() - live) == [], "declared in monitoring/names.py or aifx/metrics.py, not exposed"

    series = live_series(text)
    unmatched = sorted(
        f"{name} {matchers}"
        for expr in [r["expr"] for r in alert_rules()] + dashboard_exprs()
        for name, matchers in promql_selectors(expr)
        if name not in derived and not any(selects(labels, matchers) for labels in series.get(name, []))
    )
    assert unmatched == [], f"selectors matching no live series (by {SOURCE_LABELS}): {unmatched}"


def test_live_exposition_passes_promtool(aifx_url: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("`promtool` is not on PATH: install it (Debian: apt-get install prometheus)")
    text = httpx.get(f"{aifx_url}/metrics", timeout=10).text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
