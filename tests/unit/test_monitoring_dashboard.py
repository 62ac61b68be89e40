"""The Grafana dashboard: valid JSON, complete, every query parses as PromQL; provisioning matches."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.names import DASHBOARD, dashboard_exprs, dashboard_panels

pytestmark = pytest.mark.unit

GRAFANA = DASHBOARD.parent
REQUIRED_PANELS = {
    "Request rate by endpoint and status": "bentoml_service_request_total",
    "Error rate": "aifx:api_errors:ratio_rate5m",
    "Latency of /reversal/predict": "histogram_quantile(0.99",
    "Predictions by signal and version": "aifx_predictions_total",
    "Stage 1 probability distribution": "aifx_stage1_probability_bucket",
    "Stage 1 probability quantiles": "aifx_stage1_probability_bucket",
    "Confidence": "aifx_confidence",
    "Active version": "aifx_active_version",
    "Stage model failures": "aifx_stage_call_failures_total",
    # The "Outcomes (live)" row (issue 12 item 6).
    "Live hit rate vs walk-forward": "aifx_walkforward_hit_rate",
    "Live mean pips per signal": "aifx_live_mean_pips",
    "Live signals": "aifx_live_signals",
    "Pending backlog": "aifx_outcomes_pending_oldest_seconds",
    "Bars logged, resolved and expired": "aifx_outcomes_resolved_total",
    "Evaluation rows dropped by reason": "sum by (reason) (rate(aifx_evaluation_rows_dropped_total",
    "Candle conflicts": "aifx_candle_conflicts_total",
    "Input drift (PSI / alert threshold) by feature": "aifx_feature_drift_psi_ratio",
    # The "Deciding between versions" row (issue 13).
    "Comparison state against the active version": "aifx_comparison_state",
    "Experiment SRM p-value": "aifx_experiment_srm_p_value",
}
OUTCOME_ROW = "Outcomes (live)"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_identity_and_variables(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "aifx-reversal-engine" and dashboard["title"] == "AIFX Reversal Engine"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["version"]["includeAll"] and variables["version"]["allValue"] == ".*"


def test_required_panels_and_their_queries(dashboard: dict[str, Any]) -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p.get("targets", [])) for p in dashboard_panels()}
    for title, needle in REQUIRED_PANELS.items():
        assert needle in exprs[title], title
    heatmap = next(p for p in dashboard_panels() if p["type"] == "heatmap")
    assert heatmap["targets"][0]["format"] == "heatmap"


def test_panels_are_well_formed(dashboard: dict[str, Any]) -> None:
    panels = dashboard_panels()
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24, p["title"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{p['title']} overlaps another panel"
        cells |= area
        if p["type"] == "row":  # a section header: no query of its own
            assert (grid["x"], grid["w"], grid["h"]) == (0, 24, 1) and p["title"], p["title"]
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["description"]
        assert p["targets"] and all(t["expr"] and t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


def test_outcome_row_holds_the_outcome_panels(dashboard: dict[str, Any]) -> None:
    """The panels between the "Outcomes (live)" row and the next row (or the end) read the outcome loop's metrics."""
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == OUTCOME_ROW)
    assert not panels[start]["collapsed"] and panels[start]["panels"] == []
    section = []
    for p in panels[start + 1 :]:
        if p["type"] == "row":
            break
        section.append(p)
    exprs = " ".join(t["expr"] for p in section for t in p["targets"])
    for name in ("aifx_live_hit_rate", "aifx_walkforward_hit_rate", "aifx_live_mean_pips", "aifx_live_signals",
                 "aifx_outcomes_pending", "aifx_outcomes_pending_oldest_seconds", "aifx_outcomes_resolved_total",
                 "aifx_outcomes_expired_total", "aifx_evaluation_bars_logged_total",
                 "aifx_evaluation_rows_dropped_total", "aifx_candle_conflicts_total"):  # fmt: skip
        assert name in exprs, name


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana variables replaced) as the expr of a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("`promtool` is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
    rules = [{"record": f"dashboard:query:{i}", "expr": e} for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_provisioning_matches_the_dashboard(dashboard: dict[str, Any]) -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://localhost:9090"
    default = next(v for v in dashboard["templating"]["list"] if v["name"] == "datasource")["current"]
    assert (default["value"], default["text"]) == (source["uid"], source["name"])
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/aifx.yml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"].startswith("/")
