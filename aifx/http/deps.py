"""Route dependencies: the parts and settings attached at start-up, and the guards that run before a body is read.

All `async def`: FastAPI runs a plain `def` dependency in a thread pool, a thread hop per request and dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from starlette.applications import Starlette
from starlette.datastructures import State

from aifx.http.access import check_admin, check_outcome, check_same_site, is_admin, is_local_operator, is_trusted
from aifx.serving.errors import ApiError, UnsupportedMediaType
from aifx.serving.parts import Parts
from aifx.settings import Settings
from experiments.schema import ID_LEN

AdminAuth = Annotated[str | None, Header()]
ExperimentId = Annotated[str, Path(max_length=ID_LEN, description=f"1-{ID_LEN} characters of A-Z a-z 0-9 _ . -")]
PredictionId = Annotated[str, Path(max_length=36, description="the prediction_id a predict response returned")]
Version = Annotated[str, Path(max_length=ID_LEN, description="a configured model version, e.g. v3.1")]


async def app_parts(request: Request) -> Parts:
    """The registry, predictor, A/B tests and the rest, attached when the service started."""
    attached = getattr(request.app.state, "parts", None)
    if attached is None:
        raise ApiError("the service is starting; retry in a moment", status=503, reason="stage_unavailable")
    return attached


async def app_settings(request: Request) -> Settings:
    """The settings the app was made with."""
    return request.app.state.settings


def assembled(rest: Starlette) -> State:
    """The REST app's state with its settings, rate-limit buckets and body budget (aifx/http/app.py `assemble`).

    The service middlewares that share them read it when Starlette builds them, at the first request, after the
    worker's start assembled the app (aifx/http/bootstrap.py `start_worker`); before that it is a wiring error.
    """
    if getattr(rest.state, "settings", None) is None:
        raise RuntimeError("the REST app has no settings yet: assemble it before it serves (aifx/http/app.py)")
    return rest.state


PartsDep = Annotated[Parts, Depends(app_parts)]
SettingsDep = Annotated[Settings, Depends(app_settings)]


async def trusted(settings: SettingsDep, authorization: AdminAuth = None) -> bool:
    """Whether the request carries the outcome or admin token (its bar may enter the evaluation log)."""
    return is_trusted(settings, authorization)


async def admin_view(request: Request, settings: SettingsDep, authorization: AdminAuth = None) -> bool:
    """Whether the caller may see details: the admin token, or a local caller while no token is set."""
    return is_admin(settings, authorization) or is_local_operator(settings, request.scope)


async def admin_token(settings: SettingsDep, authorization: AdminAuth = None) -> bool:
    """Whether the request carries the admin token."""
    return is_admin(settings, authorization)


Trusted = Annotated[bool, Depends(trusted)]
AdminView = Annotated[bool, Depends(admin_view)]
AdminToken = Annotated[bool, Depends(admin_token)]


def check_json_content_type(content_type: str | None) -> None:
    """JSON routes take `application/json` (or `application/*+json`); no Content-Type is accepted for old clients.

    Form and text types (what an HTML form or a simple cross-site request can send) are 415.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not media or media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    raise UnsupportedMediaType(
        f"Content-Type {media[:100]!r} is not accepted: send the body as JSON with `Content-Type: application/json`"
    )


async def json_only(request: Request) -> None:
    """Every POST route: 415 for a Content-Type that is not JSON (before the body is read)."""
    check_json_content_type(request.headers.get("content-type"))


async def admin_only(request: Request, settings: SettingsDep) -> None:
    """Admin routes: the same-site check, then the admin token, before the body or path is validated (401 before
    422)."""
    check_same_site(settings, request.scope)
    check_admin(settings, request.scope)


async def outcome_writer(request: Request, settings: SettingsDep) -> None:
    """Outcome routes: the same-site check, then AIFX_OUTCOME_TOKEN or the admin token."""
    check_same_site(settings, request.scope)
    check_outcome(settings, request.scope)


JSON_ONLY = [Depends(json_only)]
ADMIN = [Depends(admin_only), *JSON_ONLY]
OUTCOME = [Depends(outcome_writer), *JSON_ONLY]
