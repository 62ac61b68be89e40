"""deploy/k8s.yaml hangs together: selectors, Services, dependency URLs, probes, scrape targets."""

from __future__ import annotations

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
    assert config["ENVIRONMENT"] == "production" and config["BENTOML_CONFIG"].endswith("src/configuration.yaml")
    for name in SERVICES:
        c = container(objects, name)
        assert {"configMapRef": {"name": "aifx-config"}} in c["envFrom"]
        assert {"secretRef": {"name": "aifx-secrets"}} in c["envFrom"]  # AIFX_ADMIN_TOKEN, AIFX_DATABASE_URL
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
