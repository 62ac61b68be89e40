"""Admin routes over stored data: correct a recorded outcome, erase one user's stored predictions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from starlette.responses import JSONResponse

from aifx.api.ab_tests import in_thread
from aifx.api.context import get_logger
from aifx.api.errors import ok
from aifx.api.parts import Parts
from aifx.api.responses import Envelope, OutcomeData, UserDataDeleted
from aifx.api.schemas import OutcomeRequest

logger = get_logger("bentoml.aifx.data")
PredictionId = Annotated[str, Path(max_length=36, description="the prediction_id a predict response returned")]
UserId = Annotated[str, Path(min_length=1, max_length=256, description="the user_id sent with predictions")]


def add_data_routes(app: FastAPI, admin: list[Any], parts: Callable[[Request], Parts]) -> None:
    """Register the admin data routes on app."""

    @app.put(
        "/reversal/predictions/{prediction_id}/outcome",
        response_model=Envelope[OutcomeData],
        tags=["experiments"],
        dependencies=admin,
    )
    async def correct_outcome(prediction_id: PredictionId, body: OutcomeRequest, request: Request) -> JSONResponse:
        """Admin: replace a recorded outcome (404 when there is none); `corrected_at` records when."""
        data = await in_thread(parts(request).ab.store.correct_outcome, prediction_id, body.pips)
        logger.info("outcome of %s corrected to %s pips", prediction_id, body.pips)
        return ok(data)

    @app.delete(
        "/reversal/users/{user_id}/predictions",
        response_model=Envelope[UserDataDeleted],
        tags=["experiments"],
        dependencies=admin,
    )
    async def delete_user_data(user_id: UserId, request: Request) -> JSONResponse:
        """Admin: delete every stored prediction and outcome of one user (erasure request)."""
        deleted = await in_thread(parts(request).ab.store.delete_user, user_id)
        logger.info("erased %d stored predictions of one user", deleted)
        return ok({"user_id": user_id, "deleted": deleted})
