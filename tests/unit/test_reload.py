"""A version imported while the service runs (issue 14 item 5): the entry workers follow the models generation
of the state database, the stage runners load what they lack, and nothing else stops serving meanwhile.

The registries below are two entry workers over one state "database" (a dict) and two fake stage runners;
the last test loads real models from the session's store into a stage runner.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from aifx.cache import SharedState
from aifx.serving.catalog import Catalog, StageEntry, _entry
from aifx.serving.errors import ApiError
from aifx.serving.registry import MODELS_GENERATION_KEY, VersionRegistry
from aifx.settings import Settings
from aifx.versions import VersionSpec, model_name

pytestmark = pytest.mark.unit

VERSIONS = ("v9.2", "v9.1")  # v9.2 is imported after the start


def metadata(version: str) -> dict[str, Any]:
    return VersionSpec(version, ("ret_1",), 20).to_metadata()


class Store:
    """The model store (what is imported) and the state database (the models generation)."""

    def __init__(self) -> None:
        self.models = {"v9.1"}
        self.state: dict[str, str] = {}
        self.writes = 0

    def catalog(self, versions: tuple[str, ...]) -> Catalog:
        entries = {}
        for v in versions:
            stages = {n: StageEntry(f"{model_name(v, n)}:t", metadata(v)) for n in (1, 2) if v in self.models}
            entries[v] = _entry(v, stages)
        return Catalog(tuple(versions), entries)

    def write(self, value: str) -> None:
        self.writes += 1
        self.state[MODELS_GENERATION_KEY] = value


class FakeStage:
    """A stage runner whose status call loads the named versions it lacks when the store has them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loaded = set(store.models)
        self.asked: list[list[str] | None] = []

    async def status(self, load: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
        self.asked.append(list(load) or None)
        self.loaded |= set(load) & self.store.models
        missing = {v: f"{v} is not in the model store" for v in VERSIONS if v not in self.loaded}
        return {"loaded": sorted(self.loaded), "failed": missing}


def worker(store: Store, stages: tuple[FakeStage, FakeStage], settings: Settings) -> VersionRegistry:
    """One entry worker: its own catalog read at start, shared state read through SharedState."""
    ttl, timeout = settings.state_ttl_seconds, settings.state_timeout_seconds
    return VersionRegistry(
        settings,
        store.catalog(VERSIONS),
        stages,  # type: ignore[arg-type]
        SharedState("active", lambda: None, ttl, timeout),
        lambda _: None,
        SharedState("generation", lambda: store.state.get(MODELS_GENERATION_KEY), ttl, timeout),
        store.write,
        store.catalog,
    )


@pytest.fixture
def settings() -> Settings:
    return Settings(versions=VERSIONS, state_ttl_seconds=0.05)


def test_a_reload_in_one_worker_reaches_the_other_and_the_stages(settings):
    store = Store()
    stages = (FakeStage(store), FakeStage(store))
    a, b = worker(store, stages, settings), worker(store, stages, settings)

    async def scenario() -> None:
        for w in (a, b):
            assert (await w.availability()).loaded == ["v9.1"]
            with pytest.raises(ApiError) as err:
                await w.resolve("v9.2")
            assert err.value.status == 503 and "not in the model store" in err.value.message
        store.models.add("v9.2")  # imported while the service runs
        assert "v9.2" not in (await a.availability(refresh=True)).loaded  # nothing changes before the reload
        answer = await a.reload()
        assert answer == {"loaded": ["v9.2", "v9.1"], "added": ["v9.2"], "failed": {}}
        assert stages[0].asked[-1] == ["v9.2"] and stages[1].asked[-1] == ["v9.2"]
        # The other worker reloads on its next request (the reload waited the state TTL before answering).
        version, entry = await b.resolve("v9.2")
        assert version == "v9.2" and entry.spec is not None and entry.has_stage2
        assert (await b.active_version()) == "v9.2"  # the default (first configured) serves once loaded
        assert store.writes == 1

    asyncio.run(scenario())


def test_a_reload_with_nothing_missing_writes_nothing(settings):
    store = Store()
    store.models.add("v9.2")
    stages = (FakeStage(store), FakeStage(store))
    a = worker(store, stages, settings)

    async def scenario() -> dict[str, Any]:
        return await a.reload()

    assert asyncio.run(scenario()) == {"loaded": ["v9.2", "v9.1"], "added": [], "failed": {}}
    assert store.writes == 0


def test_a_version_still_missing_is_reported_with_its_reason(settings):
    store = Store()
    a = worker(store, (FakeStage(store), FakeStage(store)), settings)

    answer = asyncio.run(a.reload())
    assert answer["loaded"] == ["v9.1"] and answer["added"] == []
    assert "not in the model store" in answer["failed"]["v9.2"]


def test_a_reload_without_the_state_database_is_a_503_and_changes_nothing(settings):
    store = Store()
    stages = (FakeStage(store), FakeStage(store))
    a = worker(store, stages, settings)

    def down(_: str) -> None:
        raise OSError("connection refused (db.internal:5432)")

    a._write_generation = down
    store.models.add("v9.2")

    async def scenario() -> None:
        with pytest.raises(ApiError) as err:
            await a.reload()
        assert err.value.status == 503 and "db.internal" not in err.value.message
        assert "v9.2" not in (await a.availability()).loaded

    asyncio.run(scenario())


def test_stage_models_load_a_version_imported_after_the_start(model_store, candles):
    from aifx.features import sample_windows
    from aifx.versions import default_spec
    from runners.stage import ReversalDetector, Window

    runner = ReversalDetector(["v3.1", "v7.7"], refs={})  # as if nothing was in the store at start
    stage = runner.models
    assert set(stage.failed) == {"v3.1", "v7.7"} and stage.absent == {"v3.1", "v7.7"}
    spec = default_spec("v3.1")
    x, _ = sample_windows(candles.slice(3000, 3200), spec.features, spec.window)
    windows = [Window("v3.1", rows, f"r{i}") for i, rows in enumerate(x[:3])]
    with pytest.raises(KeyError, match="v3.1"):
        runner.detect(windows)

    assert asyncio.run(runner.status(["v3.1", "v7.7", "v3.0"])) == {
        "stage": 1,
        "loaded": ["v3.1"],
        "failed": {"v7.7": f"{model_name('v7.7', 1)} is not in the model store"},
    }
    assert stage.absent == {"v7.7"}  # v3.0 was never configured here: not loaded
    probs = np.asarray(runner.detect(windows))
    assert probs.shape == (3,) and ((probs >= 0) & (probs <= 1)).all()
