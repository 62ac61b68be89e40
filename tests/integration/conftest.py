"""Real `bentoml serve` processes on 127.0.0.1 (random free port), killed with their process group.

Servers run one at a time: `bentoml serve` wipes BENTOML_HOME/prometheus_multiproc_dir when it
starts, so two servers on one home would share (and clear) each other's metrics files.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))
START_TIMEOUT = 180.0
KEEP_ALIVE_S = 75  # as the container and `make serve` (docs/deployment.md)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One `bentoml serve` arbiter and its workers."""

    proc: subprocess.Popen
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    def wait_ready(self, timeout: float = START_TIMEOUT) -> dict:
        """Wait until /health answers 200 with every worker's runners loaded."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.url}/health", timeout=5)
                last = r.text
                body = r.json()
                starting = any("not reachable" in why for why in body.get("failed_versions", {}).values())
                if r.status_code == 200 and body.get("loaded_versions") and not starting:
                    return body
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout}s (last: {last}):\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left (arbiter and every worker)."""
        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        _, alive = psutil.wait_procs(family, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def start_server(
    model_store, workdir: Path, target: str = ".", *, from_source: bool | None = None, wait: bool = True, **env: str
) -> Server:
    """Start `bentoml serve target` with the session's BENTOML_HOME and wait until the engine is ready.

    from_source: target is a service in this tree (default: only "."); wait=False returns at once
    (a service other than the engine has no /health of its own).
    """
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    from_source = target == "." if from_source is None else from_source
    full_env = {
        **os.environ,
        **model_store.env,
        "BENTOML_CONFIG": str(ROOT / "configuration.yaml"),
        "AIFX_DATABASE_URL": f"sqlite:///{workdir}/state.db",
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if full_env.get("BENTOML_CONFIG") == "":  # BENTOML_CONFIG="": the code defaults, as a container serves
        full_env.pop("BENTOML_CONFIG")
    full_env.pop("PYTHONPATH", None)
    if from_source:
        full_env["PYTHONPATH"] = str(ROOT)
    log = workdir / f"serve-{port}.log"
    # As production serves (Makefile, the container): uvicorn's 5 s default keep-alive equals
    # httpx's pool expiry, so the server closed idle connections just as clients reused them (RST).
    keep_alive = ["--timeout-keep-alive", str(KEEP_ALIVE_S)]
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [BENTOML, "serve", target, "--host", "127.0.0.1", "--port", str(port), *keep_alive],
            cwd=ROOT if from_source else workdir,  # a Bento must not see the source tree
            env=full_env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Server(proc, port, log, full_env)
    if not wait:
        return server
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def launch(model_store):
    """launch(workdir, target=".", **env) -> a ready Server; the caller stops it."""

    def start(workdir: Path, target: str = ".", **env: str) -> Server:
        return start_server(model_store, workdir, target, **env)

    return start


@pytest.fixture
def server_factory(model_store, tmp_path):
    """Start servers inside a test; every one is stopped at the end."""
    started: list[Server] = []

    def start(target: str = ".", workdir: Path | None = None, **env: str) -> Server:
        s = start_server(model_store, workdir or tmp_path / f"srv{len(started)}", target, **env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def copy_home(model_store, dest: Path) -> Path:
    """A private BENTOML_HOME with the session's models (for tests that damage the store)."""
    shutil.copytree(model_store.home / "models", dest / "models")
    return dest


def poll(fn, timeout: float = 90.0, every: float = 0.5):
    """fn() until it returns something truthy (returned), or the timeout (the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def home_with_always_long(model_store, work: Path, *more: str) -> Path:
    """A private BENTOML_HOME with the session's models, the test-only always-long version v9.1 and, if named
    in `more`, the always-short v9.2 (tests/integration/always_long.py)."""
    home = copy_home(model_store, work / "home")
    env = {**os.environ, "BENTOML_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    script = Path(__file__).resolve().parent / "always_long.py"
    subprocess.run([sys.executable, str(script), *more], env=env, check=True, capture_output=True)
    return home
