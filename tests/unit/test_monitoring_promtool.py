"""monitoring/prometheus.yml and alerts.yml pass promtool, and the alert unit tests pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring.names import rules

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of promtool, or a failure that says how to get it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("`promtool` is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
    return path


def run(promtool: str, *args: str) -> str:
    """Run promtool from the repo root; fail with its output unless it succeeds."""
    result = subprocess.run([promtool, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_prometheus_config_is_valid(promtool: str) -> None:
    output = run(promtool, "check", "config", "monitoring/prometheus.yml")
    assert "1 rule files found" in output


def test_alert_rules_are_valid(promtool: str) -> None:
    run(promtool, "check", "rules", "monitoring/alerts.yml")


def test_alert_unit_tests_pass(promtool: str) -> None:
    output = run(promtool, "test", "rules", "monitoring/tests/alerts_test.yml")
    assert "SUCCESS" in output


def test_scrape_config_targets_the_service_on_3000() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aifx-reversal-engine" and job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["localhost:3000"]


@pytest.mark.parametrize(
    "alert, threshold, duration, reads",
    [
        ("AIFXHighErrorRate", "> 0.01", "5m", "aifx:api_errors:ratio_rate5m"),
        ("AIFXPredictLatencyHigh", "> 0.25", "5m", "aifx:predict_latency_seconds:p99_5m"),
        ("AIFXNoPredictions", "[10m]", "1m", "aifx_predictions_total"),
        ("AIFXStage1FiringRateDrift", "0.5 * aifx:training_base_rate", "30m", "aifx:stage1_firing:ratio_1h"),
        ("AIFXLowConfidence", "< 0.5", "30m", "aifx:confidence:avg_10m"),
    ],
)
def test_required_alerts(alert: str, threshold: str, duration: str, reads: str) -> None:
    rule = next(r for r in rules() if r.get("alert") == alert)
    assert threshold in rule["expr"] and reads in rule["expr"] and rule["for"] == duration
    assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]


def test_latency_and_error_rules_select_the_api_service_not_the_bento_name() -> None:
    exprs = {r.get("record"): r["expr"] for r in rules() if "record" in r}
    for name in ("aifx:api_errors:ratio_rate5m", "aifx:predict_latency_seconds:p99_5m"):
        assert 'runner_name="ReversalEngine"' in exprs[name] and "service_name" not in exprs[name]
    assert 'endpoint="/reversal/predict"' in exprs["aifx:predict_latency_seconds:p99_5m"]
