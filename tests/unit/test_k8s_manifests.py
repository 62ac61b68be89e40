"""deploy/k8s/: one Deployment of the serving image on PostgreSQL, checked offline (issue 28, item 7).

What the real tools say (kubernetes-validate strict against the Kubernetes schemas, checkov's security
checks, promtool on the scrape config), and what they cannot: one workload and no stage objects,
migrations before the pods serve, the writable paths the service needs on a read-only root, secrets by
reference, probes and drains, the HPA's database connection budget. The network and the ingress:
test_k8s_network.py. `make k8s-check` runs the same tools by hand (docs/deployment.md "Kubernetes").
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.k8s_manifests import (
    API,
    K8S,
    MIGRATE,
    NAMESPACE,
    ROOT,
    Doc,
    Objects,
    api_container,
    config,
    containerfile,
    documents,
    load_objects,
    pod,
    runtime_config,
    workloads,
)

pytestmark = pytest.mark.unit

# The schemas bundled with kubernetes-validate (requirements.lock): 1.30 is the oldest these files need
# (the preStop sleep action), 1.37 the newest bundled.
KUBERNETES_VERSIONS = ("1.30", "1.37")
# Issue 28's acceptance set. CKV_K8S_6 looks at PodSecurityPolicy objects only (removed in Kubernetes
# 1.25): it has nothing to evaluate here; the namespace's Pod Security Admission label does its job.
SECURITY_CHECKS = {f"CKV_K8S_{n}" for n in (6, 20, 22, 23, 28, 29, 30, 31, 37, 40)}
# checkov's other findings, by design: the example image has a tag (push it, then pin its digest), and
# the service reads its secrets from environment variables (aifx/settings.py), by secretKeyRef.
ACCEPTED_FINDINGS = {"CKV_K8S_43", "CKV_K8S_35"}
POSTGRES_CONNECTIONS = 97  # max_connections 100 (PostgreSQL's default) less 3 superuser_reserved_connections
CHECKOV = ROOT / ".venv-k8s" / "bin" / "checkov"


@pytest.fixture(scope="module")
def objects() -> Objects:
    return load_objects()


# --- layout --------------------------------------------------------------------------------------------


def test_files_are_short_and_the_old_single_file_is_gone() -> None:
    assert not (ROOT / "deploy" / "k8s.yaml").exists()
    for path in K8S.glob("*.yaml"):
        assert len(path.read_text().splitlines()) <= 400, path.name


def test_one_deployment_runs_the_whole_service(objects: Objects) -> None:
    kinds = sorted(k for k, _ in objects)
    assert [name for (k, name) in objects if k == "Deployment"] == [API]
    assert [name for (k, name) in objects if k == "Job"] == [MIGRATE]
    assert kinds.count("Service") == 2 and not {"StatefulSet", "DaemonSet", "Secret"} & set(kinds)
    assert all(d["metadata"].get("namespace", NAMESPACE) == NAMESPACE for d in objects.values())
    text = "\n".join(p.read_text() for p in K8S.glob("*.yaml"))
    stages = ("ReversalDetector", "DirectionClassifier", "aifx-detector", "aifx-direction", "--depends", "serve_one")
    for stage in stages:
        assert stage not in text, f"{stage}: the stage services run inside the one service"
    c = api_container(objects)
    assert "command" not in c and "args" not in c, "the image's CMD serves the Bento"
    assert [p["containerPort"] for p in c["ports"]] == [containerfile()[2]]


def test_services_select_the_pods(objects: Objects) -> None:
    deployment = objects[("Deployment", API)]["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= labels.items()
    for name in (API, f"{API}-pods"):
        spec = objects[("Service", name)]["spec"]
        assert spec["selector"] == deployment["selector"]["matchLabels"], name
        assert [p["targetPort"] for p in spec["ports"]] == ["http"]
    assert objects[("Service", f"{API}-pods")]["spec"]["clusterIP"] == "None"


# --- the real tools ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    import kubernetes_validate

    for filename, doc in documents():
        where = f"{filename}: {doc['kind']}/{doc['metadata']['name']}"
        try:  # strict: unknown fields (a typo such as timeoutSecond) are errors, not ignored
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}, Kubernetes {version}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_the_validator_rejects_what_the_api_server_would(objects: Objects) -> None:
    import kubernetes_validate

    broken = copy.deepcopy(objects[("Deployment", API)])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["timeoutSecond"] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match="timeoutSecond"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def checkov(directory: Path) -> Doc:
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV.relative_to(ROOT)} is missing: `make k8s-tools` installs checkov (make test does)")
    out = subprocess.run(
        [str(CHECKOV), "-d", str(directory), "--framework", "kubernetes", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode in (0, 1), out.stderr[-2000:]  # 1: some check failed
    report: Doc = json.loads(out.stdout)
    return report


def test_checkov_finds_no_security_failure() -> None:
    report = checkov(ROOT / "deploy")
    assert report["summary"]["parsing_errors"] == 0
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert not {f for f in failed if f[0] in SECURITY_CHECKS}, failed
    assert {check for check, _ in failed} <= ACCEPTED_FINDINGS, failed
    passed = {(c["check_id"], c["resource"]) for c in report["results"]["passed_checks"]}
    for resource in (f"Deployment.{NAMESPACE}.{API}", f"Job.{NAMESPACE}.{MIGRATE}"):
        assert {(check, resource) for check in SECURITY_CHECKS - {"CKV_K8S_6"}} <= passed, resource


def test_checkov_sees_the_init_container(tmp_path: Path, objects: Objects) -> None:
    """The check above means something for init containers too: a weakened one fails it."""
    broken = copy.deepcopy(objects[("Deployment", API)])
    ctx = broken["spec"]["template"]["spec"]["initContainers"][0]["securityContext"]
    ctx.update(readOnlyRootFilesystem=False, allowPrivilegeEscalation=True, capabilities={"add": ["NET_RAW"]})
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(broken))
    failed = {c["check_id"] for c in checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_28", "CKV_K8S_37"} <= failed


def test_the_kubernetes_scrape_config_finds_every_pod(objects: Objects) -> None:
    scrape = yaml.safe_load((ROOT / "monitoring/prometheus-kubernetes.yml").read_text())
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "aifx-reversal-engine"
    assert job["dns_sd_configs"][0]["names"] == [f"{API}-pods.{NAMESPACE}.svc.cluster.local"]
    assert job["dns_sd_configs"][0]["port"] == containerfile()[2]
    annotations = objects[("Deployment", API)]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(containerfile()[2])
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


# --- pods ----------------------------------------------------------------------------------------------


def test_every_container_runs_unprivileged_on_a_read_only_root(objects: Objects) -> None:
    uid = containerfile()[0]
    assert uid >= 10000, "CKV_K8S_40: a uid that no host user has"
    labels = objects[("Namespace", NAMESPACE)]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    found = workloads(objects)
    assert {where for where, _, _ in found} == {f"{API}/wait-for-schema", f"{API}/api", f"{MIGRATE}/migrate"}
    for where, spec, c in found:
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False, where
        ctx = c["securityContext"]
        effective = {**spec["securityContext"], **ctx}
        assert effective["runAsNonRoot"] is True and effective["runAsUser"] == uid, where
        assert effective["runAsGroup"] == uid, where
        assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False, where
        assert ctx["privileged"] is False, where
        assert ctx["capabilities"] == {"drop": ["ALL"]}, where
        assert effective["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for kind in ("requests", "limits"):
            assert {"cpu", "memory", "ephemeral-storage"} <= c["resources"][kind].keys(), where
        assert "hostNetwork" not in spec and "hostPID" not in spec and "hostIPC" not in spec, where


def test_one_pinned_image_pulled_always(objects: Objects) -> None:
    images = {c["image"] for _, _, c in workloads(objects)}
    assert len(images) == 1, images
    (image,) = images
    assert "@sha256:" in image or re.search(r":[0-9][\w.-]*$", image), f"{image}: a digest or a fixed version tag"
    assert not image.endswith(":latest")
    assert all(c["imagePullPolicy"] == "Always" for _, _, c in workloads(objects))


def test_what_the_service_writes_is_on_empty_dirs(objects: Objects) -> None:
    """Measured with the image run read-only as uid 10001 (docs/deployment.md): /tmp, BENTOML_HOME, the spool."""
    spec = pod(objects, "Deployment", API)
    data = config(objects)
    sizes = {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in api_container(objects)["volumeMounts"]}
    for path in ("/tmp", data["BENTOML_HOME"], data["AIFX_EVALUATION_SPOOL_DIR"]):
        assert mounts.get(path) in sizes, f"{path}: not writable on a read-only root"
    assert not data["BENTOML_HOME"].startswith("/home/bentoml/bento"), "the Bento itself stays read-only"
    # each worker spools up to AIFX_EVALUATION_SPOOL_BYTES: the volume must hold them all (over its
    # sizeLimit the kubelet evicts the pod, spool included)
    spool_mib = int(sizes[mounts[data["AIFX_EVALUATION_SPOOL_DIR"]]].removesuffix("Mi"))
    assert runtime_config()["workers"] * int(data["AIFX_EVALUATION_SPOOL_BYTES"]) < spool_mib * 2**20


def test_secrets_come_by_reference_and_only_where_needed(objects: Objects) -> None:
    def secret_refs(c: Doc) -> dict[str, tuple[str, str]]:
        assert not [e for e in c.get("envFrom", []) if "secretRef" in e], "key by key, not a whole Secret"
        return {
            e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }

    for e in [e for _, _, c in workloads(objects) for e in c.get("env", [])]:
        assert "value" not in e or not re.search("TOKEN|PASSWORD|DATABASE_URL", e["name"]), e["name"]
    assert not [k for k in config(objects) if re.search("TOKEN|PASSWORD|DATABASE_URL", k)]
    assert secret_refs(api_container(objects)) == {
        name: ("aifx-secrets", name) for name in ("AIFX_ADMIN_TOKEN", "AIFX_OUTCOME_TOKEN", "AIFX_DATABASE_URL")
    }
    (wait,) = pod(objects, "Deployment", API)["initContainers"]
    assert secret_refs(wait) == {"AIFX_DATABASE_URL": ("aifx-secrets", "AIFX_DATABASE_URL")}
    (migrate,) = pod(objects, "Job", MIGRATE)["containers"]
    assert secret_refs(migrate) == {"AIFX_DATABASE_URL": ("aifx-migrate-secrets", "AIFX_DATABASE_URL")}
    assert "aifx-migrate-secrets" not in yaml.safe_dump(objects[("Deployment", API)]), "no DDL rights while serving"


def test_the_settings_start_the_service(objects: Objects, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap with the Secret's three keys is a valid production configuration."""
    from aifx.settings import Settings

    for key in [k for k in os.environ if k.startswith("AIFX_") or k == "ENVIRONMENT"]:
        monkeypatch.delenv(key)
    for key, value in config(objects).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIFX_ADMIN_TOKEN", "a" * 64)
    monkeypatch.setenv("AIFX_OUTCOME_TOKEN", "o" * 64)
    monkeypatch.setenv("AIFX_DATABASE_URL", "postgresql+psycopg://aifx:pw@postgres.database.svc:5432/aifx")
    settings = Settings()
    assert settings.environment == "production" and not settings.migrate_on_start
    assert settings.versions == tuple(config(objects)["AIFX_VERSIONS"].split(","))


def test_migrations_run_in_a_job_the_pods_wait_for(objects: Objects) -> None:
    from experiments.__main__ import main

    (migrate,) = pod(objects, "Job", MIGRATE)["containers"]
    assert migrate["command"] == ["python", "-m", "experiments", "migrate"]
    assert pod(objects, "Job", MIGRATE)["restartPolicy"] == "Never"
    (wait,) = pod(objects, "Deployment", API)["initContainers"]
    assert wait["command"][:4] == ["python", "-m", "experiments", "wait"]
    for c in (migrate, wait):
        assert c["workingDir"] == "/home/bentoml/bento/src"  # where the Bento's experiments package is
    with pytest.raises(SystemExit) as parsed:
        main([*wait["command"][3:], "--help"])
    assert parsed.value.code == 0
    assert objects[("Deployment", API)]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_probes_and_a_drain_before_stopping(objects: Objects) -> None:
    c = api_container(objects)
    assert c["startupProbe"]["httpGet"]["path"] == c["livenessProbe"]["httpGet"]["path"] == "/livez"  # BentoML's
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"  # 503 while no version can serve
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == "http" and c[probe]["timeoutSeconds"] >= 3, probe
    cmd = containerfile()[1]
    keep_alive = int(cmd[cmd.index("--timeout-keep-alive") + 1])
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod(objects, "Deployment", API)["terminationGracePeriodSeconds"]
    assert pause >= 5, "endpoints and the ingress need a few seconds to drop the pod"
    assert grace > pause + runtime_config()["traffic"]["timeout"] and grace > keep_alive


# --- scale-out -----------------------------------------------------------------------------------------


def test_replicas_come_from_the_hpa_and_drains_take_one_pod(objects: Objects) -> None:
    deployment = objects[("Deployment", API)]["spec"]
    assert "replicas" not in deployment, "an apply would reset the HPA's choice"
    hpa = objects[("HorizontalPodAutoscaler", API)]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": API}
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    pdb = objects[("PodDisruptionBudget", API)]["spec"]
    assert pdb["selector"] == deployment["selector"] and pdb["maxUnavailable"] == 1


def test_the_database_has_connections_for_every_pod_the_hpa_may_run(objects: Objects) -> None:
    data = config(objects)
    per_worker = int(data["AIFX_DATABASE_POOL_SIZE"]) + int(data["AIFX_DATABASE_MAX_OVERFLOW"])
    pods = objects[("HorizontalPodAutoscaler", API)]["spec"]["maxReplicas"]
    pods += objects[("Deployment", API)]["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    migration = 1  # MIGRATION_OPTIONS: one connection
    assert pods * runtime_config()["workers"] * per_worker + migration <= POSTGRES_CONNECTIONS


def test_replicas_spread_over_nodes_and_zones(objects: Objects) -> None:
    spec = pod(objects, "Deployment", API)
    labels = objects[("Deployment", API)]["spec"]["template"]["metadata"]["labels"]
    keys = {}
    for constraint in spec["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
        assert constraint["maxSkew"] == 1
        keys[constraint["topologyKey"]] = constraint["whenUnsatisfiable"]
    assert keys == {"kubernetes.io/hostname": "DoNotSchedule", "topology.kubernetes.io/zone": "ScheduleAnyway"}
