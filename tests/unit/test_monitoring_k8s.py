"""deploy/k8s.yaml hangs together (selectors, Services, dependency URLs, probes, scrape targets), validates
against the pinned Kubernetes schemas, and holds the hardening policies (security contexts, secrets,
NetworkPolicies, replicas and PodDisruptionBudgets, probe timeouts, graceful termination, rate limit)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"aifx-api": "ReversalEngine", "aifx-detector": "ReversalDetector", "aifx-direction": "DirectionClassifier"}


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s.yaml").read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def container(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    (c,) = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"]
    return c


def test_one_deployment_per_bentoml_service(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    for name, service in SERVICES.items():
        deployment = objects[("Deployment", name)]["spec"]
        labels = deployment["template"]["metadata"]["labels"]
        assert deployment["selector"]["matchLabels"].items() <= labels.items()
        args = container(objects, name)["args"]
        assert args[:3] == ["python", "/opt/aifx/serve_one.py", "/home/bentoml/bento"]
        assert args[args.index("--service") + 1] == service
        for kind_name in (name, f"{name}-pods"):
            assert objects[("Service", kind_name)]["spec"]["selector"] == deployment["selector"]["matchLabels"]
        assert objects[("Service", f"{name}-pods")]["spec"]["clusterIP"] == "None"


def test_the_api_reaches_the_stage_services_by_their_service_names(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    args = container(objects, "aifx-api")["args"]
    depends = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--depends")
    assert depends == {
        "ReversalDetector": "http://aifx-detector.aifx.svc:3000",
        "DirectionClassifier": "http://aifx-direction.aifx.svc:3000",
    }


def test_production_settings_and_probes(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    config = objects[("ConfigMap", "aifx-config")]["data"]
    assert config["BENTOML_CONFIG"].endswith("src/configuration.yaml")
    assert objects[("ConfigMap", "aifx-api-config")]["data"]["ENVIRONMENT"] == "production"
    api = container(objects, "aifx-api")
    assert {"configMapRef": {"name": "aifx-api-config"}} in api["envFrom"]
    assert {"secretRef": {"name": "aifx-secrets"}} in api["envFrom"]  # AIFX_ADMIN_TOKEN, AIFX_DATABASE_URL, ...
    for name in SERVICES:
        c = container(objects, name)
        assert {"configMapRef": {"name": "aifx-config"}} in c["envFrom"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez" and c["readinessProbe"]["httpGet"]["port"] == "http"
        meta = objects[("Deployment", name)]["spec"]["template"]["metadata"]
        assert meta["annotations"]["prometheus.io/port"] == "3000"


def test_kubernetes_scrape_config_matches_the_headless_services(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    config = yaml.safe_load((ROOT / "monitoring/prometheus-kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aifx-reversal-engine"
    names = job["dns_sd_configs"][0]["names"]
    assert names == [f"{n}-pods.aifx.svc.cluster.local" for n in SERVICES]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("`promtool` is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
    result = subprocess.run(
        [promtool, "check", "config", "monitoring/prometheus-kubernetes.yml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_serve_one_refuses_missing_dependency_urls() -> None:
    from deploy.serve_one import parse_depends

    assert parse_depends(["ReversalDetector=http://aifx-detector:3000/"]) == {
        "ReversalDetector": "http://aifx-detector:3000"
    }
    with pytest.raises(SystemExit, match="NAME=http://host:port"):
        parse_depends(["ReversalDetector"])


# --- validation against the pinned Kubernetes schemas and the hardening policies --------------------------

# The schemas bundled with kubernetes-validate (requirements.lock), offline. Raise with the clusters.
KUBERNETES_VERSION = "1.30"
STAGES = ("aifx-detector", "aifx-direction")
ENTRY = "aifx-api"
REQUEST_TIMEOUT_S = 30  # configuration.yaml / runners.inference STAGE_SERVICE_CONFIG traffic.timeout


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """Every document of every deploy/*.yaml, with its file name."""
    out = []
    for path in sorted([*ROOT.glob("deploy/*.yaml"), *ROOT.glob("deploy/*.yml")]):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    assert out, "no manifests under deploy/"
    return out


def pod_spec(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    spec: dict[str, Any] = objects[("Deployment", name)]["spec"]["template"]["spec"]
    return spec


def of_kind(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for (k, _), d in objects.items() if k == kind]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions) against labels; {} selects everything."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]:
            return False
    return True


def pod_labels(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, str]:
    labels: dict[str, str] = objects[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_manifest_validates_against_the_pinned_kubernetes_schema() -> None:
    import kubernetes_validate

    for filename, doc in manifests():
        where = f"{filename}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            # strict: unknown fields (a typo such as timeoutSecond) are errors, not ignored
            assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION, where
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where} does not validate against Kubernetes {KUBERNETES_VERSION}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{where}: {exc.message}")


def test_the_validator_rejects_what_the_api_server_would(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    import kubernetes_validate

    broken = copy.deepcopy(objects[("Deployment", ENTRY)])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["timeoutSecond"] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match="timeoutSecond"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_container_runs_unprivileged_on_a_read_only_root(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    config = objects[("ConfigMap", "aifx-config")]["data"]
    for name in SERVICES:
        pod = pod_spec(objects, name)
        assert pod["automountServiceAccountToken"] is False, name
        pod_ctx = pod.get("securityContext", {})
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            ctx = c.get("securityContext", {})
            effective = {**pod_ctx, **ctx}
            where = f"{name}/{c['name']}"
            assert effective.get("runAsNonRoot") is True, where
            # BentoML's image says USER bentoml (a name): the kubelet needs a numeric uid to verify non-root
            assert isinstance(effective.get("runAsUser"), int) and effective["runAsUser"] > 0, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("privileged", False) is False, where
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"] and not ctx["capabilities"].get("add"), where
            assert effective.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            # what `bentoml serve` writes: temp dirs and sockets in /tmp, BENTOML_HOME/prometheus_multiproc_dir
            empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
            writable = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
            assert {"/tmp", config["BENTOML_HOME"]} <= writable, where
            assert not config["BENTOML_HOME"].startswith("/home/bentoml/bento"), "the Bento itself stays read-only"


def test_only_the_entry_gets_secrets(objects: dict[tuple[str, str], dict[str, Any]], monkeypatch) -> None:
    for name in STAGES:
        pod = pod_spec(objects, name)
        (c,) = pod["containers"]
        assert not [e for e in c.get("envFrom", []) if "secretRef" in e], name
        assert not [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})], name
        assert not [v for v in pod.get("volumes", []) if "secret" in v or "projected" in v], name
        # The stage settings a pod gets must start without a token: Settings() refuses ENVIRONMENT=production
        # without AIFX_ADMIN_TOKEN, and the stage services read the settings at import.
        env: dict[str, str] = {}
        for ref in c["envFrom"]:
            env.update(objects[("ConfigMap", ref["configMapRef"]["name"])]["data"])
        env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e})
        for key in list(os.environ):
            if key.startswith("AIFX_") or key == "ENVIRONMENT":
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        from aifx.settings import Settings

        assert Settings().versions == tuple(env["AIFX_VERSIONS"].split(",")), name
    assert {"secretRef": {"name": "aifx-secrets"}} in container(objects, ENTRY)["envFrom"]


def test_every_deployment_keeps_two_pods_through_disruptions(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name in SERVICES:
        deployment = objects[("Deployment", name)]["spec"]
        assert deployment["replicas"] >= 2, name
        for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
            if hpa["spec"]["scaleTargetRef"]["name"] == name:
                assert hpa["spec"]["minReplicas"] >= 2, name
        (pdb,) = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(objects, name))]
        assert pdb["spec"]["selector"] == deployment["selector"], name
        spec = pdb["spec"]
        assert (spec.get("minAvailable", 0) >= 1) or (spec.get("maxUnavailable", 0) >= 1), name
        assert spec.get("minAvailable", 0) < deployment["replicas"], f"{name}: the budget would block every drain"


def _policies_for(objects: dict[tuple[str, str], dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], pod_labels(objects, name)) and "Ingress" in p["spec"]["policyTypes"]
    ]


def _prometheus_peer(peer: dict[str, Any]) -> bool:
    ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
    return ns.get("kubernetes.io/metadata.name") == "monitoring" and bool(
        peer.get("podSelector", {}).get("matchLabels")
    )


def test_stage_pods_accept_the_entry_pods_only(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    entry = pod_labels(objects, ENTRY)
    for name in STAGES:
        policies = _policies_for(objects, name)
        assert policies, f"{name}: no NetworkPolicy selects the pods, so every pod of the cluster reaches them"
        entry_allowed = False
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("from"), f"{policy['metadata']['name']}: a rule without `from` admits everyone"
                assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports admits every port"
                for peer in rule["from"]:
                    assert "ipBlock" not in peer, policy["metadata"]["name"]
                    if _prometheus_peer(peer):
                        continue  # Prometheus scrapes /metrics (monitoring/prometheus-kubernetes.yml)
                    assert set(peer) == {"podSelector"}, f"{peer}: only pods of this namespace"
                    assert selects(peer["podSelector"], entry), peer
                    for other in STAGES:
                        assert not selects(peer["podSelector"], pod_labels(objects, other)), peer
                    entry_allowed = True
        assert entry_allowed, f"{name}: the entry pods cannot reach it"
        assert any("Egress" in p["spec"]["policyTypes"] for p in policies), f"{name}: stage pods open no connections"


def test_the_entry_is_reachable_from_the_ingress_controller(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    peers = [peer for p in _policies_for(objects, ENTRY) for r in p["spec"]["ingress"] for peer in r["from"]]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in peers


def test_probes_tolerate_a_slow_readiness_route_and_pods_drain_before_stopping(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    from deploy.serve_one import KEEP_ALIVE_S

    for name in SERVICES:
        pod = pod_spec(objects, name)
        c = container(objects, name)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe].get("timeoutSeconds", 1) >= 3, f"{name} {probe}: /health can take 2 s"
        pre_stop = c["lifecycle"]["preStop"]
        if "sleep" in pre_stop:
            pause = pre_stop["sleep"]["seconds"]
        else:
            command = pre_stop["exec"]["command"]
            assert command[0] == "sleep", pre_stop
            pause = int(command[1])
        assert pause >= 5, f"{name}: endpoints and the ingress need a few seconds to drop the pod"
        grace = pod["terminationGracePeriodSeconds"]
        assert grace > pause + REQUEST_TIMEOUT_S and grace > KEEP_ALIVE_S, name


def test_the_ingress_rate_limits_each_client_for_all_api_pods(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    (ingress,) = of_kind(objects, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/limit-rps"]) > 0
    assert int(annotations["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    backends = [p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [ENTRY]


def test_migrations_run_as_the_schema_owner_in_a_job(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    job = objects[("Job", "aifx-migrate")]["spec"]["template"]["spec"]
    (migrate,) = job["containers"]
    assert migrate["args"] == ["python", "-m", "experiments", "migrate"]
    assert migrate["envFrom"] == [{"secretRef": {"name": "aifx-migrate-secrets"}}]
    for (kind, _), obj in objects.items():
        if kind == "Deployment":  # serving pods never get the owner's (DDL) credentials
            assert "aifx-migrate-secrets" not in yaml.safe_dump(obj)
