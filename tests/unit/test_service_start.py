"""Issue 27, item 4: settings are read when the service starts, not when service.py is imported."""

from __future__ import annotations

import pytest

from aifx.settings import Settings, SettingsError, import_settings

pytestmark = pytest.mark.unit


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
