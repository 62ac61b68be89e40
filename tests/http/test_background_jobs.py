"""Issue 29, item 9: the retention purge runs in one worker per pod (like the resolver), not in every worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.http


@pytest.mark.parametrize("index,expected", [(1, True), (2, False), (None, True)])
def test_only_the_first_worker_purges(client, monkeypatch, index, expected):
    from aifx.http import bootstrap

    parts = bootstrap.app.state.parts
    started: list[str] = []

    async def idle(*_args: Any, **_kwargs: Any) -> None:
        return None

    def recorder(name: str):
        async def job(*_args: Any, **_kwargs: Any) -> None:
            started.append(name)

        return job

    monkeypatch.setattr(bootstrap, "gc", SimpleNamespace(collect=lambda: 0, freeze=lambda: None))  # test process
    monkeypatch.setattr(bootstrap.server_context, "worker_index", index)
    monkeypatch.setattr(bootstrap, "purge_periodically", recorder("purge"))
    monkeypatch.setattr(bootstrap, "report_when_ready", idle)
    monkeypatch.setattr(bootstrap, "publish_drift", idle)
    monkeypatch.setattr(parts.outcomes, "run", recorder("resolver"))
    monkeypatch.setattr(parts.promoter, "run", idle)

    async def scenario() -> None:
        bootstrap.attach(parts)
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert ("purge" in started) is expected and ("resolver" in started) is expected
