"""Metric names used by the alert rules and the Grafana dashboard, and where they are exposed.

python -m monitoring.names                                  # against the names the code declares
python -m monitoring.names http://127.0.0.1:3000/metrics    # against a live exposition
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "alerts.yml"
DASHBOARD = HERE / "grafana" / "aifx-dashboard.json"

# Series Prometheus makes itself (per target), not found in any exposition.
SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS", "ALERTS_FOR_STATE"})
# BentoML 1.4 new-style services (namespace `bentoml_service`, see configuration.yaml), by type. Only the
# service (runner_name="ReversalEngine") exports them: its workers run the stage models in process.
BENTOML_METRICS = {
    "bentoml_service_request_duration_seconds": "histogram",
    "bentoml_service_request_total": "counter",
    "bentoml_service_request_in_progress": "gauge",
    "bentoml_service_last_request_timestamp_seconds": "gauge",
}
# Names the rules read that the service is to export but does not declare yet (name -> who exports it).
PENDING: dict[str, str] = {}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "gauge": ("",)}
KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"inf", "nan", "atan2"}
)
GRAFANA_VARIABLES = {r"\$__rate_interval": "5m", r"\$__interval": "1m", r"\$__range": "1h"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels and literals removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if not call and name.lower() not in KEYWORDS:
            names.add(name)
    return names


def promql_selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The `name{label op "value", ...}` selectors of a PromQL expression, as (name, [(label, op, value)])."""
    string = r'"(?:[^"\\]|\\.)*"'
    selectors = []
    for match in re.finditer(rf"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{{((?:{string}|[^\"}}])*)\}}", expr):
        matchers = re.findall(rf"([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*({string})", match.group(2))
        selectors.append((match.group(1), [(label, op, json.loads(value)) for label, op, value in matchers]))
    return selectors


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced so that Prometheus can parse it."""
    for pattern, value in GRAFANA_VARIABLES.items():
        expr = re.sub(pattern, value, expr)
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of a rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def recorded_names(path: Path = RULES) -> set[str]:
    """Names the recording rules define."""
    return {r["record"] for r in rules(path) if "record" in r}


def rule_names(path: Path = RULES) -> set[str]:
    """Metric names read by the rules' expressions."""
    return set().union(*(promql_metric_names(r["expr"]) for r in rules(path)))


def dashboard_panels(path: Path = DASHBOARD) -> list[dict[str, Any]]:
    """Every panel of the dashboard (rows flattened)."""
    panels = json.loads(path.read_text())["panels"]
    return [p for panel in panels for p in [panel, *panel.get("panels", [])]]


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL target and query-variable definition of the dashboard, Grafana variables replaced."""
    dash = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard_panels(path) for t in p.get("targets", []) if t.get("expr")]
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        if var.get("type") == "query" and isinstance(query, dict):
            exprs.append(_label_values_metric(query["query"]))
    return [grafana_to_promql(e) for e in exprs]


def _label_values_metric(query: str) -> str:
    """label_values(metric, label) -> metric (the part Prometheus evaluates)."""
    match = re.fullmatch(r"\s*label_values\(\s*([^,]+),\s*\w+\s*\)\s*", query)
    return match.group(1) if match else query


def dashboard_names(path: Path = DASHBOARD) -> set[str]:
    """Metric names read by the dashboard."""
    return set().union(*(promql_metric_names(e) for e in dashboard_exprs(path)))


def sample_names(family: str, kind: str) -> set[str]:
    """Sample names of a metric family in the text exposition (counter x -> x_total, ...)."""
    base = family.removesuffix("_total") if kind == "counter" else family
    return {base + suffix for suffix in SUFFIXES.get(kind, ("",))}


def declared_names() -> set[str]:
    """Sample names declared by aifx/metrics.py (prometheus_client objects) and by BentoML."""
    from prometheus_client.metrics import MetricWrapperBase

    from aifx import metrics

    names = set().union(*(sample_names(n, k) for n, k in BENTOML_METRICS.items()))
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            for family in obj.describe():
                names |= sample_names(family.name, family.type)
    return names


def exposition_names(text: str) -> set[str]:
    """Sample names in a Prometheus text exposition (also families announced by # TYPE only)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples} | sample_names(family.name, family.type)
    return names


def missing(used: Iterable[str], available: set[str], recorded: set[str]) -> list[str]:
    """Used names that are neither available, recorded by a rule nor synthetic."""
    return sorted(set(used) - available - recorded - SYNTHETIC)


def main(argv: list[str]) -> int:
    """Print the rule and dashboard metric names missing from the declared names or a live /metrics."""
    if argv:
        import urllib.request

        with urllib.request.urlopen(argv[0], timeout=10) as response:
            available = exposition_names(response.read().decode())
    else:
        available = declared_names()
    gaps = missing(rule_names() | dashboard_names(), available, recorded_names())
    for name in gaps:
        print(f"missing: {name}" + (f" (pending: {PENDING[name]})" if name in PENDING else ""))
    print(f"{len(gaps)} missing name(s)")
    return 1 if gaps else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
