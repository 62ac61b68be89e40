"""Admin routes over stored data: correct a recorded outcome, erase one user's stored predictions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import JSONResponse

from aifx.http.body import json_body, openapi_body
from aifx.http.deps import ADMIN, PartsDep
from aifx.http.envelope import ERROR_RESPONSES, ok
from aifx.http.responses import Envelope, OutcomeData, UserDataDeleted
from aifx.serving.ab_tests import in_thread
from aifx.serving.context import get_logger
from aifx.serving.parts import Parts
from aifx.serving.schemas import OutcomeRequest

logger = get_logger("bentoml.aifx.data")
PredictionId = Annotated[str, Path(max_length=36, description="the prediction_id a predict response returned")]
UserId = Annotated[str, Path(min_length=1, max_length=256, description="the user_id sent with predictions")]
UserQuery = Annotated[str, Query(min_length=1, max_length=256, description="the user_id sent with predictions")]
router = APIRouter(responses=ERROR_RESPONSES)  # the envelope for every error status


@router.put(
    "/reversal/predictions/{prediction_id}/outcome",
    response_model=Envelope[OutcomeData],
    tags=["experiments"],
    dependencies=ADMIN,
    openapi_extra=openapi_body(OutcomeRequest),
)
async def correct_outcome(
    prediction_id: PredictionId, body: Annotated[OutcomeRequest, json_body(OutcomeRequest)], p: PartsDep
) -> JSONResponse:
    """Admin: replace a recorded outcome (404 when there is none); `corrected_at` records when."""
    data = await in_thread(p.ab.store.correct_outcome, prediction_id, body.pips)
    logger.info("outcome of %s corrected to %s pips", prediction_id, body.pips)
    return ok(data)


@router.delete(
    "/reversal/users/predictions",
    response_model=Envelope[UserDataDeleted],
    tags=["experiments"],
    dependencies=ADMIN,
)
async def delete_user_data_by_query(user_id: UserQuery, p: PartsDep) -> JSONResponse:
    """Admin: as DELETE /reversal/users/{user_id}/predictions, for any user id (`?user_id=`, URL-encoded)."""
    return await erase(p, user_id)


@router.delete(
    "/reversal/users/{user_id:path}/predictions",
    response_model=Envelope[UserDataDeleted],
    tags=["experiments"],
    dependencies=ADMIN,
)
async def delete_user_data(user_id: UserId, p: PartsDep) -> JSONResponse:
    """Admin: delete every stored prediction and outcome of one user (erasure request).

    A user id may contain `/` (sent as is or as %2F); an id that a client would rewrite in a path
    (`.`, `..`) goes in the query form.
    """
    return await erase(p, user_id)


async def erase(p: Parts, user_id: str) -> JSONResponse:
    """Delete one user's stored predictions; the answer names the user and the count."""
    deleted = await in_thread(p.ab.store.delete_user, user_id)
    logger.info("erased %d stored predictions of one user", deleted)
    return ok({"user_id": user_id, "deleted": deleted})
