"""deploy/aifx.service: keep-alive flag, environment file, migrations before start, restart policy."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
UNIT = Path(__file__).resolve().parents[2] / "deploy" / "aifx.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_serves_the_bento_with_the_keep_alive_flag_after_migrating() -> None:
    service = unit()["Service"]
    assert "bentoml serve aifx-reversal-engine:latest" in service["ExecStart"]
    assert "--timeout-keep-alive 75" in service["ExecStart"]
    assert "-m experiments migrate" in service["ExecStartPre"]
    assert service["EnvironmentFile"] == "/etc/aifx/aifx.env"
    assert "BENTOML_CONFIG=/opt/aifx/configuration.yaml" in UNIT.read_text()


def test_restart_policy_and_stop() -> None:
    parsed = unit()
    service = parsed["Service"]
    assert service["Restart"] == "on-failure" and int(service["RestartSec"]) > 0
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) > 30  # > request timeout
    assert parsed["Unit"]["StartLimitBurst"] and parsed["Install"]["WantedBy"] == "multi-user.target"
    assert service["User"] == "aifx" and service["NoNewPrivileges"] == "yes"
