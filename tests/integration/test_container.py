"""The serving image, built as `make container` builds it and run with podman against the test PostgreSQL.

One module-scoped container: readiness, a predict, /metrics, an admin switch, then SIGTERM. The image is
rebuilt only when no image of this commit exists (a dirty tree always rebuilds; podman's layer cache keeps
the pip step unless the serving requirements change).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from deploy import container
from tests.conftest_pg import in_ci
from tests.integration.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.postgres]
pytest_plugins = ["tests.conftest_pg"]
ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE = "localhost/aifx-reversal-engine-test"  # the session's tiny models: never the `make container` image
GRACE_S = 30  # podman stop's (and a kubelet's) wait before SIGKILL
TOKEN = secrets.token_hex(32)
TOOLS = ("podman", "runc", "debootstrap")


@pytest.fixture(scope="module")
def image(model_store) -> str:
    """The image reference, built (or reused) from this tree with the session's model store."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        message = f"{', '.join(missing)} not installed (scripts/test-deps.sh installs them as root)"
        if in_ci():
            pytest.fail(f"{message}; CI must run the container test", pytrace=False)
        pytest.skip(message)
    env = {**os.environ, **model_store.env, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "deploy.container", "build", "--image", TEST_IMAGE, "--reuse"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def running(image, pg_server_url, tmp_path_factory):
    """(base URL, podman run process, container name) of the image serving on a fresh PostgreSQL schema."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    schema = f"aifx_container_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, poolclass=NullPool)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(pg_server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    port = free_port()
    name = f"aifx-test-{uuid.uuid4().hex[:8]}"
    env = {
        "ENVIRONMENT": "production",
        "AIFX_ADMIN_TOKEN": TOKEN,
        "AIFX_DATABASE_URL": url.render_as_string(hide_password=False),
        "AIFX_DATABASE_MIGRATE": "true",  # production's default is a separate migration step
        "AIFX_VERSIONS": "v3.1,v3.0",
    }
    args = container.run_args(image, port, env, name=name)
    args.remove("--rm")  # the exit code is read after the stop
    log = tmp_path_factory.mktemp("container") / "container.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"not ready in 180 s:\n{log.read_text(errors='replace')[-4000:]}")
        yield base, proc, name, log
    finally:
        subprocess.run([*container.PODMAN, "rm", "-f", "-t", "0", name], capture_output=True)
        if proc.poll() is None:
            proc.kill()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_image_labels_and_size(image):
    out = subprocess.run(
        [*container.PODMAN, "image", "inspect", image, "--format", "{{json .Labels}}|{{.Size}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    labels, size = out.stdout.strip().split("|")
    assert '"model.aifx-v3.1-stage1"' in labels and '"aifx.bento"' in labels
    assert int(size) < 1_200_000_000  # no TensorFlow: ~760 MB (docs/deployment.md)


def test_image_holds_serving_dependencies_only(image):
    cmd = [*container.PODMAN, "run", "--rm", *container.ULIMITS, "--network", "host", image, "pip", "list"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    installed = out.stdout.lower()
    assert "bentoml" in installed and "ai-edge-litert" in installed
    for name in ("tensorflow", "keras ", "pytest", "pandas", "matplotlib"):
        assert name not in installed, name


def test_serves_predicts_switches_and_stops_on_sigterm(running, candle_json):
    base, proc, name, log = running
    body = {"pair": "EUR/USD", "timeframe": "1h", "data": candle_json(3000, 60)}
    r = httpx.post(f"{base}/reversal/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["model_version"] == "v3.1"

    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert "aifx_" in metrics and "bentoml_service_request_total" in metrics

    assert httpx.post(f"{base}/reversal/models/v3.0/switch", timeout=10).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{base}/reversal/models/v3.0/switch", headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    # Every worker sees the switch within the state TTL (0.5 s): the next read may reach the other worker.
    active = ""
    for _ in range(20):
        active = httpx.get(f"{base}/reversal/models", timeout=10).json()["data"]["active_version"]
        if active == "v3.0":
            break
        time.sleep(0.25)
    assert active == "v3.0"

    started = time.monotonic()
    stop = subprocess.run(
        [*container.PODMAN, "stop", "-t", str(GRACE_S), name], capture_output=True, text=True, timeout=GRACE_S + 30
    )
    elapsed = time.monotonic() - started
    assert stop.returncode == 0, stop.stderr
    code = proc.wait(timeout=30)
    tail = log.read_text(errors="replace")[-3000:]
    assert code == 0, f"exit {code} (137 = killed after the grace period):\n{tail}"
    assert elapsed < GRACE_S, elapsed
    assert "Completed cleanup hook: flush_outcomes" in tail
