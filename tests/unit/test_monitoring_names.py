"""Every metric the alert rules and the dashboard read exists (declared in code or by BentoML)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from monitoring.names import (
    BENTOML_METRICS,
    PENDING,
    dashboard_names,
    declared_names,
    exposition_names,
    grafana_to_promql,
    missing,
    promql_metric_names,
    promql_selectors,
    recorded_names,
    rule_names,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(yaml.__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "expr, names",
    [
        ("up", {"up"}),
        ('sum by (le) (rate(x_bucket{a="b", c=~"d|e"}[5m]))', {"x_bucket"}),
        ("histogram_quantile(0.99, sum(rate(h_bucket[1m])) by (le)) > 0.25", {"h_bucket"}),
        ("abs(a:b:c - on(version) d) > on(version) (0.5 * d) and on(version) (e >= 100)", {"a:b:c", "d", "e"}),
        ('sum(rate(x_total{signal!="hold"}[1h])) / sum(rate(x_total[1h] offset 5m))', {"x_total"}),
        ('absent_over_time(y[10m]) or vector(0) unless z{job="and"}', {"y", "z"}),
        ("1e3 * m / scalar(n) + 2.5", {"m", "n"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_promql_selectors() -> None:
    expr = 'sum(rate(x_total{a="b", c=~"d|e", f!="g"}[5m])) / y{e="/m/{v}", q="\\"x\\""} + z'
    assert promql_selectors(expr) == [
        ("x_total", [("a", "=", "b"), ("c", "=~", "d|e"), ("f", "!=", "g")]),
        ("y", [("e", "=", "/m/{v}"), ("q", "=", '"x"')]),
    ]


def test_grafana_variables_are_replaced() -> None:
    expr = 'rate(x{version=~"$version", v2=~"${other}"}[$__rate_interval])'
    assert grafana_to_promql(expr) == 'rate(x{version=~".*", v2=~".*"}[5m])'


def test_rules_and_dashboard_read_only_declared_metrics() -> None:
    used = rule_names() | dashboard_names()
    gaps = missing(used, declared_names(), recorded_names())
    assert [g for g in gaps if g not in PENDING] == []


def test_pending_metrics_are_declared() -> None:
    assert sorted(set(PENDING) - declared_names()) == []
    assert "aifx_training_base_rate" in declared_names()  # read by the firing-rate drift alert


def test_recording_rules_read_by_the_dashboard_exist() -> None:
    recorded_in_dashboard = {n for n in dashboard_names() if ":" in n}
    assert recorded_in_dashboard and recorded_in_dashboard <= recorded_names()


def test_every_custom_metric_is_used_somewhere() -> None:
    used = rule_names() | dashboard_names()
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in declared_names() if n.startswith("aifx_")}
    unused = sorted(f for f in families if not any(u.startswith(f) for u in used))
    assert unused == []


def test_bentoml_names_match_the_pinned_bentoml() -> None:
    """The metric names and namespace we assume are those BentoML 1.4 new-style services register."""
    config = yaml.safe_load((ROOT / "configuration.yaml").read_text())
    assert config["services"]["ReversalEngine"]["metrics"]["namespace"] == "bentoml_service"
    sources = (SITE / "bentoml/_internal/server/http/instruments.py").read_text()
    sources += (SITE / "_bentoml_impl/server/app.py").read_text()
    for name in BENTOML_METRICS:
        assert f'name="{name.removeprefix("bentoml_service_")}"' in sources, name


def test_exposition_names_cover_typed_families_without_samples() -> None:
    text = (
        "# HELP aifx_errors_total Requests answered with an error\n"
        "# TYPE aifx_errors_total counter\n"
        "# HELP h A histogram\n# TYPE h histogram\n"
        'h_bucket{le="+Inf"} 1.0\nh_count 1.0\nh_sum 0.2\n'
    )
    names = exposition_names(text)
    assert {"aifx_errors_total", "h_bucket", "h_count", "h_sum"} <= names
