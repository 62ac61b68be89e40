"""What the model store says about each configured version (metadata only, no model loading)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from aifx.domain import Domain
from aifx.versions import VersionSpec, model_name

logger = logging.getLogger("bentoml.aifx.catalog")


@dataclass(frozen=True)
class StageEntry:
    """One stage of a version in the store."""

    tag: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class VersionEntry:
    """A configured version: its spec and stage entries, or why it is not usable."""

    version: str
    spec: VersionSpec | None
    stages: dict[int, StageEntry] = field(default_factory=dict)
    problem: str | None = None
    domain: Domain | None = None  # None: not recorded (older imports), the domain is unknown

    def in_domain(self, pair: str, timeframe: str) -> bool | None:
        """Whether a request is inside the pairs and timeframes the version was trained on (None: unknown)."""
        return None if self.domain is None else self.domain.contains(pair, timeframe)

    @cached_property
    def models(self) -> str:
        """The version and its stage models' store tags: a window's stage outputs depend on nothing else."""
        return ",".join([self.version, *(self.stages[k].tag for k in sorted(self.stages))])

    @property
    def has_stage2(self) -> bool:
        return 2 in self.stages

    @property
    def metadata(self) -> dict[str, Any]:
        return self.stages[1].metadata if 1 in self.stages else {}

    @property
    def base_rate(self) -> float | None:
        """Stage 1 positive base rate of the training data (metrics.overall.model.base_rate), if recorded."""
        try:
            value = self.metadata["metrics"]["overall"]["model"]["base_rate"]
        except (KeyError, TypeError):
            return None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def walkforward_hit_rate(self) -> float | None:
        """Share of the walk-forward backtest's trades (cost 1 pip) that reached take profit, if recorded."""
        try:
            value = self.metadata["metrics"]["backtest"]["costs"][0]["take_profit_rate"]
        except (KeyError, TypeError, IndexError):
            return None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Catalog:
    """Configured versions in fallback order."""

    order: tuple[str, ...]
    entries: dict[str, VersionEntry]

    @classmethod
    def from_store(cls, versions: tuple[str, ...]) -> Catalog:
        """Read each version's stage entries from the current BentoML model store."""
        import bentoml
        from bentoml.exceptions import NotFound

        entries = {}
        for version in versions:
            stages: dict[int, StageEntry] = {}
            for stage in (1, 2):
                try:
                    m = bentoml.models.get(model_name(version, stage))
                except NotFound:
                    continue
                stages[stage] = StageEntry(str(m.tag), dict(m.info.metadata))
            entries[version] = _entry(version, stages)
        return cls(tuple(versions), entries)

    def known(self, version: str) -> bool:
        return version in self.entries

    def base_rates(self) -> dict[str, float]:
        """Stage 1 base rate per configured version that records one."""
        rates = {v: self.entries[v].base_rate for v in self.order}
        return {v: r for v, r in rates.items() if r is not None}

    def walkforward_hit_rates(self) -> dict[str, float]:
        """Walk-forward take-profit rate per configured version that records one."""
        rates = {v: self.entries[v].walkforward_hit_rate for v in self.order}
        return {v: r for v, r in rates.items() if r is not None}


def _entry(version: str, stages: dict[int, StageEntry]) -> VersionEntry:
    if 1 not in stages:
        return VersionEntry(version, None, stages, f"{model_name(version, 1)} is not in the model store")
    try:
        spec = VersionSpec.from_metadata(stages[1].metadata)
    except (KeyError, TypeError, ValueError) as exc:
        return VersionEntry(version, None, stages, f"{model_name(version, 1)} has unusable metadata: {exc}")
    return VersionEntry(version, spec, stages, domain=_domain(version, stages[1].metadata))


def _domain(version: str, meta: dict[str, Any]) -> Domain | None:
    """The recorded domain; a malformed one is treated as unknown (it never stops a version from serving)."""
    try:
        return Domain.from_metadata(meta)
    except ValueError as exc:
        logger.warning("%s: domain unknown, its metadata is malformed: %s", version, exc)
        return None
