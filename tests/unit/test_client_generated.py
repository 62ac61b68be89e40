"""aifx_client/client.py is what `python -m aifx_client._generate` makes from aio.py (unasync)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aifx_client import _generate

pytestmark = pytest.mark.unit


def test_committed_sync_client_matches_the_generated_one(tmp_path: Path) -> None:
    fresh = tmp_path / "client.py"
    _generate.generate(fresh)
    assert fresh.read_bytes() == _generate.TARGET.read_bytes(), f"client.py is stale: run `{_generate.COMMAND}`"


def test_check_flags_a_stale_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "client.py"
    stale.write_bytes(_generate.TARGET.read_bytes() + b"# hand edit\n")
    monkeypatch.setattr(_generate, "TARGET", stale)
    assert _generate.main(["--check"]) == 1
