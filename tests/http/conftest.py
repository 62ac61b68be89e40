"""In-process client: the entry service's ASGI app with the stage services as local instances."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(scope="session")
def client(model_store, tmp_path_factory):
    """TestClient over ReversalEngine.to_asgi() (bentoml.depends resolves locally when not served)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIFX_VERSIONS", model_store.versions)
    mp.setenv("AIFX_DATABASE_URL", f"sqlite:///{tmp_path_factory.mktemp('state')}/state.db")
    from aifx.settings import get_settings

    get_settings.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's TestClient prefers httpx2, which we do not ship
        from starlette.testclient import TestClient
    from service import ReversalEngine

    try:
        with TestClient(ReversalEngine.to_asgi()) as c:
            yield c
    finally:
        mp.undo()
        get_settings.cache_clear()
