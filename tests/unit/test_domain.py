"""A version's training domain (aifx/domain.py) and the catalog's reading of it."""

from __future__ import annotations

import pytest

from aifx.domain import BUNDLED_DATA_DOMAIN, Domain
from aifx.serving.catalog import StageEntry, _entry
from aifx.versions import VersionSpec

pytestmark = pytest.mark.unit


def test_requests_inside_and_outside():
    d = Domain.of(["EURUSD", "gbp/jpy"], ["1h", "4h"])
    assert d.to_metadata() == {"pairs": ["EUR/USD", "GBP/JPY"], "timeframes": ["1h", "4h"]}
    assert d.contains("EUR/USD", "1h") and d.contains("eur_usd", " 4h ") and d.contains("GBPJPY", "1h")
    assert not d.contains("EUR/USD", "15m") and not d.contains("AUD/USD", "1h") and not d.contains("", "1h")
    assert not d.contains("not a pair", "1h")


def test_metadata_round_trip_and_absent_or_malformed():
    meta = {"domain": BUNDLED_DATA_DOMAIN.to_metadata()}
    assert Domain.from_metadata(meta) == BUNDLED_DATA_DOMAIN
    assert Domain.from_metadata({}) is None
    for bad in ("EUR/USD", {"pairs": "EUR/USD", "timeframes": ["1h"]}, {"pairs": [1], "timeframes": ["1h"]},
                {"pairs": [], "timeframes": ["1h"]}, {"pairs": ["EUR/USD"], "timeframes": [" "]}):  # fmt: skip
        with pytest.raises(ValueError):
            Domain.from_metadata({"domain": bad})


def test_catalog_entries_with_without_and_with_a_broken_domain():
    spec = VersionSpec("v9", ("ret_1",), 20).to_metadata()

    def entry(extra: dict):
        return _entry("v9", {1: StageEntry("aifx-v9-stage1:t", {**spec, **extra})})

    assert entry({"domain": {"pairs": ["EUR/USD"], "timeframes": ["1h"]}}).in_domain("GBP/JPY", "4h") is False
    assert entry({"domain": {"pairs": ["EUR/USD"], "timeframes": ["1h"]}}).in_domain("EURUSD", "1h") is True
    assert entry({}).in_domain("GBP/JPY", "4h") is None  # imported before domains: unknown
    broken = entry({"domain": {"pairs": "EUR/USD"}})
    assert broken.problem is None and broken.domain is None  # serves, domain unknown
