"""`bentoml build` offline, the Bento's models and Dockerfile, and serving the built Bento."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def _offline(cmd: list[str]) -> list[str]:
    """Run without a network when this machine allows a private network namespace."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n", *cmd]
    return cmd


@pytest.fixture(scope="module")
def bento_tag(model_store) -> str:
    # Production without AIFX_ADMIN_TOKEN: a build imports the service, which reads no runtime secrets.
    env = {**os.environ, **model_store.env, "PYTHONPATH": str(ROOT), "ENVIRONMENT": "production"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("AIFX_ADMIN_TOKEN", None)
    out = subprocess.run(
        _offline([BENTOML, "build", "."]), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    match = re.search(r'Successfully built Bento\(tag="([^"]+)"\)', out.stdout + out.stderr)
    assert match, out.stdout[-2000:]
    return match.group(1)


def test_bento_holds_models_and_dockerfile(bento_tag, model_store, tmp_path):
    import bentoml

    bento = bentoml.bentos.get(bento_tag)
    tags = {str(m.tag).split(":")[0] for m in bento.info.all_models}
    assert {"aifx-v3.1-stage1", "aifx-v3.1-stage2", "aifx-v3.0-stage1", "aifx-v3.0-stage2"} <= tags
    dockerfile = Path(bento.path) / "env" / "docker" / "Dockerfile"
    assert dockerfile.is_file() and "FROM " in dockerfile.read_text()
    assert (Path(bento.path) / "src" / "configuration.yaml").is_file()
    for source in ("ab_testing.py", "experiments/store.py", "aifx/serving/ab_tests.py"):  # the seed's import works
        assert (Path(bento.path) / "src" / source).is_file(), source
    assert not (Path(bento.path) / "src" / "tests").exists()
    # The Bento installs what serving imports and nothing else (issue 27, item 3).
    from deploy.serving_requirements import NEVER, canonical

    installed = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text().splitlines()
    names = {canonical(line.split("==")[0]) for line in installed if "==" in line}
    assert {"bentoml", "ai-edge-litert", "numpy"} <= names and not names & {canonical(n) for n in NEVER}, names
    exported = tmp_path / "engine.bento"
    env = {**os.environ, **model_store.env}
    out = subprocess.run(
        _offline([BENTOML, "export", bento_tag, str(exported)]), env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with tarfile.open(exported) as tar:
        names = [n.removeprefix("./") for n in tar.getnames()]
    for name in ("aifx-v3.1-stage1", "aifx-v3.0-stage2"):
        for file in ("model.keras", "model.tflite", "scaler.json", "calibration.json"):
            assert any(n.startswith(f"models/{name}/") and n.endswith(file) for n in names), (name, file)


def test_built_bento_without_config_loses_only_in_flight_requests_when_a_worker_dies(
    bento_tag, launch, tmp_path, candle_json
):
    """A Bento served without BENTOML_CONFIG runs the code defaults: two workers, so a killed one costs little."""
    from tests.integration.test_faults import check_no_cost, firing_bodies, kill_under_load, service_workers

    server = launch(tmp_path / "bento-kill", target=bento_tag, BENTOML_CONFIG="")
    try:
        assert len(service_workers(server)) == 2  # the code default, not configuration.yaml's
        calls, kill_at, serving = kill_under_load(server, firing_bodies(server.url, candle_json))
        check_no_cost(server, calls, kill_at, serving)
    finally:
        server.stop()


def test_serve_built_bento(bento_tag, launch, tmp_path, candle_json):
    server = launch(tmp_path / "bento", target=bento_tag)
    try:
        r = httpx.post(
            f"{server.url}/reversal/predict",
            json={"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(3000, 60)},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["model_version"] == "v3.1"
    finally:
        server.stop()
