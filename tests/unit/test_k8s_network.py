"""deploy/k8s/: the NetworkPolicies and an ingress that publishes the public API only (issue 28, item 7).

The published paths are checked against the app's actual routes and their guards (admin and outcome
token), including raw paths that nginx normalizes into a published one while Starlette routes them,
unresolved, to a guarded one.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from tests.unit.k8s_manifests import API, MIGRATE, Doc, Objects, config, containerfile, load_objects

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def objects() -> Objects:
    return load_objects()


# --- network -------------------------------------------------------------------------------------------

DNS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}  # fmt: skip
POSTGRES = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "database"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}}}  # fmt: skip


def selects(selector: Doc, labels: dict[str, str]) -> bool:
    """matchLabels only (these manifests use no matchExpressions); {} selects every pod."""
    assert "matchExpressions" not in selector
    return bool(selector.get("matchLabels", {}).items() <= labels.items())


def policies_of(objects: Objects, labels: dict[str, str]) -> list[Doc]:
    policies = [p["spec"] for (k, _), p in objects.items() if k == "NetworkPolicy"]
    return [p for p in policies if selects(p["podSelector"], labels)]


def test_the_namespace_denies_by_default(objects: Objects) -> None:
    deny = objects[("NetworkPolicy", "aifx-default-deny")]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_api_pods_talk_to_dns_and_postgresql_only(objects: Objects) -> None:
    for kind, name in (("Deployment", API), ("Job", MIGRATE)):
        labels = objects[(kind, name)]["spec"]["template"]["metadata"]["labels"]
        egress = [r for p in policies_of(objects, labels) for r in p.get("egress", [])]
        assert egress == [
            {"to": [DNS], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            {"to": [POSTGRES], "ports": [{"protocol": "TCP", "port": 5432}]},
        ], name


def test_api_pods_accept_the_ingress_controller_prometheus_and_labelled_clients(
    objects: Objects,
) -> None:
    labels = objects[("Deployment", API)]["spec"]["template"]["metadata"]["labels"]
    (rule,) = [r for p in policies_of(objects, labels) for r in p.get("ingress", [])]
    assert rule["ports"] == [{"protocol": "TCP", "port": containerfile()[2]}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"aifx-api-client": "true"}}},
    ]  # fmt: skip
    migrate = objects[("Job", MIGRATE)]["spec"]["template"]["metadata"]["labels"]
    assert not [r for p in policies_of(objects, migrate) for r in p.get("ingress", [])]


# --- the ingress publishes the public API only -----------------------------------------------------------

SAMPLE = {"version": "v3.1", "experiment_id": "v30_vs_v31", "prediction_id": "4f1c2a9e-0000-4000-8000-000000000001",
          "user_id": "user123", "challenger": "v3.2"}  # fmt: skip
GUARDS = {"admin_only", "outcome_writer"}  # aifx/http/app.py: admin_guard, outcome_guard
# Not published although unguarded: the GET listing shares its path with the admin POST.
UNPUBLISHED_PUBLIC = {("GET", "/reversal/experiments")}


def ingress_paths(objects: Objects) -> list[re.Pattern[str]]:
    """The paths as ingress-nginx uses them with use-regex: `~* "^<path>"` (case-insensitive)."""
    ingress = objects[("Ingress", API)]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    out = []
    for rule in ingress["spec"]["rules"]:
        for p in rule["http"]["paths"]:
            # Exact or Prefix would become prefix regexes too under use-regex: every path is anchored here
            assert p["pathType"] == "ImplementationSpecific" and p["path"].endswith("$"), p["path"]
            assert p["backend"]["service"] == {"name": API, "port": {"name": "http"}}
            out.append(re.compile("^" + p["path"], re.IGNORECASE))
    return out


def app_routes() -> list[tuple[str, str, re.Pattern[str], bool]]:
    """(method, template, Starlette's path regex, guarded) of every route of the REST app."""
    from fastapi.routing import APIRoute

    from aifx.http.app import create_app
    from aifx.settings import Settings

    routes = []
    for route in create_app(Settings()).routes:
        if not isinstance(route, APIRoute):
            continue
        guards = {getattr(d.call, "__name__", "") for d in route.dependant.dependencies} & GUARDS
        routes += [(m, route.path, route.path_regex, bool(guards)) for m in sorted(route.methods or ())]
    assert len(routes) > 20
    return routes


def sample_path(template: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: SAMPLE[m.group(1)], template)


def nginx_uri(raw: str) -> str:
    """nginx's normalized $uri, which locations match: decoded, slashes merged, `.` and `..` resolved."""
    out: list[str] = []
    for segment in re.sub("/+", "/", unquote(raw)).split("/")[1:]:
        if segment == "..":
            out = out[:-1]
        elif segment != ".":
            out.append(segment)
    return "/" + "/".join(out)


def test_the_ingress_publishes_the_public_routes_and_no_guarded_one(objects: Objects) -> None:
    published = ingress_paths(objects)
    routes = app_routes()
    is_published = {(m, t): any(p.match(sample_path(t)) for p in published) for m, t, _, _ in routes}
    for method, template, _, guarded in routes:
        if guarded:
            assert not is_published[(method, template)], f"{method} {template}: an admin or outcome route"
    public = {(m, t) for m, t, _, guarded in routes if not guarded}
    assert {r for r in public if not is_published[r]} == UNPUBLISHED_PUBLIC
    for path in ("/metrics", "/docs.json", "/schema.json", "/", "/docs", "/livez", "/readyz", "/v1/predict",
                 "/v1/models/switch", "/reversal/models/reload"):  # fmt: skip
        assert not any(p.match(path) for p in published), path
    for version in config(objects)["AIFX_VERSIONS"].split(","):
        assert any(p.match(f"/reversal/models/{version}") for p in published), version


def test_no_raw_path_reaches_a_guarded_route_through_a_published_one(objects: Objects) -> None:
    """nginx matches the normalized path but forwards the raw one, which Starlette routes unresolved."""
    # A path convertor (`{user_id:path}`) matches `..` segments: tried for every guarded route and
    # parameter, dot segments and climbs back to every prefix of every route's path.
    published = ingress_paths(objects)
    routes = app_routes()
    heads = {"/".join(sample_path(t).split("/")[:i]) for _, t, _, _ in routes for i in range(2, 8)}
    tried = 0
    for _, template, regex, guarded in routes:
        if not guarded:
            continue
        for name, convertor in re.findall(r"\{(\w+)(:path)?\}", template):
            values = [".", "..", "%2e", "%2E%2E"]
            if convertor:  # may hold slashes: climb out and name any published prefix
                values += [f"a/{'../' * k}{h.strip('/')}" for k in range(1, 6) for h in heads]
                values += [f"a%2F{'..%2F' * k}{h.strip('/')}" for k in range(1, 6) for h in heads]
            for value in values:
                raw = re.sub(r"\{" + name + r"(:path)?\}", value, template)
                raw = sample_path(raw)
                if not regex.match(unquote(raw)):  # Starlette would not route it there
                    continue
                tried += 1
                uri = nginx_uri(raw)
                assert not any(p.match(uri) for p in published), f"{raw} -> nginx {uri} -> {template}"
    assert tried > 100


def test_the_ingress_rate_limits_each_client(objects: Objects) -> None:
    annotations = objects[("Ingress", API)]["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/limit-rps"]) > 0
    assert int(annotations["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
