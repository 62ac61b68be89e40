"""The serving image's inputs: serving requirements without training or test tools, the Bento version, run flags."""

from __future__ import annotations

import re

import pytest

from deploy import container
from deploy.serving_requirements import NEVER, canonical, closure, serving_lines

pytestmark = pytest.mark.unit


def test_serving_requirements_leave_training_and_tools_out() -> None:
    names = closure()
    assert {"bentoml", "numpy", "ai-edge-litert", "psycopg-binary", "python-json-logger", "ta-lib"} <= names
    assert not names & {canonical(n) for n in NEVER}
    lines = serving_lines()
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==\S+", line) for line in lines)
    assert not any(line.lower().startswith(("tensorflow", "pytest", "keras==", "pandas==")) for line in lines)


def test_bento_version_is_project_version_and_commit() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+-[0-9a-f]{10}(-dirty)?", container.bento_version())


def test_run_args_use_host_network_lowered_limits_and_runc() -> None:
    args = container.run_args("img:1", 3123, {"AIFX_X": "1"}, name="n")
    assert args[:5] == ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    assert {"--network", "host", "nofile=1024:1024", "nproc=4096:4096", "BENTOML_PORT=3123", "AIFX_X=1"} <= set(args)
    assert args[-1] == "img:1"


def test_containerfile_takes_the_bentos_envs() -> None:
    text = (container.ROOT / "deploy" / "Containerfile").read_text()
    assert "#ENVS#" in text and "requirements-serving.txt" in text
    assert "requirements.lock" not in text.replace("# ", "")


def test_serve_one_refuses_missing_dependency_urls() -> None:
    from deploy.serve_one import parse_depends

    assert parse_depends(["ReversalDetector=http://aifx-detector:3000/"]) == {
        "ReversalDetector": "http://aifx-detector:3000"
    }
    with pytest.raises(SystemExit, match="NAME=http://host:port"):
        parse_depends(["ReversalDetector"])
