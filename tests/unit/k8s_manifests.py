"""deploy/k8s/ read for the tests: its documents, the workloads' containers, what the image says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
NAMESPACE = "aifx"
API = "aifx-api"
MIGRATE = "aifx-migrate"

Doc = dict[str, Any]
Objects = dict[tuple[str, str], Doc]


def documents() -> list[tuple[str, Doc]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    assert out, "no manifests under deploy/k8s/"
    return out


def load_objects() -> Objects:
    """(kind, name) -> document."""
    return {(d["kind"], d["metadata"]["name"]): d for _, d in documents()}


def pod(objects: Objects, kind: str, name: str) -> Doc:
    spec: Doc = objects[(kind, name)]["spec"]["template"]["spec"]
    return spec


def workloads(objects: Objects) -> list[tuple[str, Doc, Doc]]:
    """(name, pod spec, container) for every container and init container of every workload."""
    out = []
    for (kind, name), obj in objects.items():
        if kind in ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"):
            spec = obj["spec"]["template"]["spec"]
            out += [(f"{name}/{c['name']}", spec, c) for c in [*spec.get("initContainers", []), *spec["containers"]]]
    return out


def api_container(objects: Objects) -> Doc:
    (c,) = pod(objects, "Deployment", API)["containers"]
    return c


def config(objects: Objects) -> dict[str, str]:
    data: dict[str, str] = objects[("ConfigMap", "aifx-config")]["data"]
    return data


def containerfile() -> tuple[int, list[str], int]:
    """The image's USER, CMD and BENTOML_PORT (deploy/Containerfile)."""
    text = (ROOT / "deploy" / "Containerfile").read_text()
    user = int(re.search(r"^USER (\d+)$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"BENTOML_PORT=(\d+)", text).group(1))  # type: ignore[union-attr]
    return user, cmd, port


def runtime_config() -> Doc:
    service: Doc = yaml.safe_load((ROOT / "configuration.yaml").read_text())["services"]["ReversalEngine"]
    return service
