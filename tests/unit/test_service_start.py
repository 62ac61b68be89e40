"""Issue 27, item 4: settings are read when the service starts, not when service.py is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aifx.settings import Settings, SettingsError, import_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

# What `bentoml build` and tooling do (import), then each start: the serve process's hook, a worker's to_asgi().
IMPORT_THEN_START = """
import json, os
import service
from aifx.http.bootstrap import app
from aifx.settings import SettingsError, get_settings

imported = {"settings_built": get_settings.cache_info().currsize, "versions": list(service.VERSIONS),
            "app_settings": getattr(app.state, "settings", None) is not None, "routes": [r.path for r in app.routes],
            "forwarded": os.environ.get("FORWARDED_ALLOW_IPS")}
refusals = []
for start in (service.ReversalEngine.inner.check_settings, service.ReversalEngine.to_asgi):
    try:
        start()
    except SettingsError as exc:
        refusals.append(str(exc))
print(json.dumps({"imported": imported, "refusals": refusals}))
"""


def test_the_service_imports_without_runtime_secrets_and_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFX_") and k != "FORWARDED_ALLOW_IPS"}
    env.update(
        PYTHONPATH=str(ROOT),
        BENTOML_HOME=str(tmp_path / "bentoml"),  # an empty store: the service declares no models
        ENVIRONMENT="production",  # no AIFX_ADMIN_TOKEN
        AIFX_DATABASE_URL=f"sqlite:///{tmp_path}/state.db",
        AIFX_VERSIONS="v3.1",
    )
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_THEN_START], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    imported = report["imported"]
    assert imported["settings_built"] == 0 and imported["versions"] == ["v3.1"], imported
    assert not imported["app_settings"] and imported["forwarded"] is None, imported
    # The routes are there at import: `bentoml build` documents them.
    assert {"/reversal/predict", "/reversal/models/{version}", "/predict"} <= set(imported["routes"]), imported
    assert len(report["refusals"]) == 2, report
    for message in report["refusals"]:
        assert message.startswith("AIFX Reversal Engine refuses to start: ENVIRONMENT=production requires")
        assert "\n" not in message


def test_the_settings_read_at_import_are_validated_as_the_settings_are(monkeypatch):
    monkeypatch.setenv("AIFX_VERSIONS", " v3.0 , v3.1,")
    monkeypatch.setenv("LOG_LEVEL", " WARN ")
    imported = import_settings()
    assert (
        (imported.versions, imported.log_level)
        == (Settings().versions, Settings().log_level)
        == (("v3.0", "v3.1"), "warning")
    )
    monkeypatch.setenv("AIFX_VERSIONS", "v3.1,v3.1")
    with pytest.raises(SettingsError, match=r"^AIFX Reversal Engine refuses to start: AIFX_VERSIONS lists a version"):
        import_settings()
