"""A version's domain: the pairs and timeframes its training data covered (Stage 1 metadata `domain`).

Requests outside the domain are still served; the answer says so (`factors.in_domain: false`).
Entries imported without a domain (before domains were recorded, or seed imports) have an unknown
domain: `in_domain` is null for them and nothing is counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from aifx.trade import UnknownPair, normalise_pair

DOMAIN_KEY = "domain"


@dataclass(frozen=True)
class Domain:
    """Pairs (as BASE/QUOTE) and timeframes (as written, e.g. 1h) a version was trained on."""

    pairs: frozenset[str]
    timeframes: frozenset[str]

    @classmethod
    def of(cls, pairs: Iterable[str], timeframes: Iterable[str]) -> Domain:
        """A domain from names as a client may write them (EURUSD, eur/usd, ...)."""
        out = cls(frozenset(canonical_pair(p) for p in pairs), frozenset(t.strip() for t in timeframes))
        if not out.pairs or not out.timeframes or "" in out.timeframes:
            raise ValueError("a domain needs at least one pair and one non-empty timeframe")
        return out

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Domain | None:
        """The recorded domain, None when none is recorded; ValueError when it is malformed."""
        value = meta.get(DOMAIN_KEY)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError(f"metadata {DOMAIN_KEY!r} is not an object: {value!r:.80}")
        pairs, timeframes = value.get("pairs"), value.get("timeframes")
        if (
            not isinstance(pairs, list | tuple)
            or not isinstance(timeframes, list | tuple)
            or not _strings([*pairs, *timeframes])
        ):
            raise ValueError(f"metadata {DOMAIN_KEY!r} needs lists of strings 'pairs' and 'timeframes': {value!r:.80}")
        return cls.of(pairs, timeframes)

    def to_metadata(self) -> dict[str, list[str]]:
        return {"pairs": sorted(self.pairs), "timeframes": sorted(self.timeframes)}

    def contains(self, pair: str, timeframe: str) -> bool:
        """Whether a request's pair and timeframe are among those the version was trained on."""
        return timeframe.strip() in self.timeframes and canonical_pair(pair) in self.pairs


@lru_cache(maxsize=4096)
def canonical_pair(pair: str) -> str:
    """EURUSD, eur_usd, EUR-USD -> EUR/USD (as the outcome log writes pairs); anything else upper-cased."""
    try:
        return normalise_pair(pair)
    except UnknownPair:
        return pair.strip().upper()


# The bundled data set (data/FOREX_EURUSD_1H_ASK.csv, data/PROVENANCE.md): what training records by default.
BUNDLED_DATA_DOMAIN = Domain.of(["EUR/USD"], ["1h"])


def _strings(values: list[Any]) -> bool:
    return all(isinstance(v, str) for v in values)
