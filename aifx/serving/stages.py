"""Stage calls in the entry worker: the runners' probabilities, a model fault as a 503 with an error id."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aifx import metrics
from aifx.serving.context import get_logger
from aifx.serving.errors import StageUnavailable, error_id, with_error_id
from runners.stage import Window

logger = get_logger("bentoml.aifx.stages")


def run(call: Callable[[Sequence[Window]], list[float]], stage: int, windows: Sequence[Window]) -> list[float]:
    """`call` (a runner's detect or classify) over the windows; any exception becomes a 503 (text in the log only)."""
    try:
        return call(windows)
    except Exception as exc:
        metrics.STAGE_FAILURES.labels(stage=f"stage{stage}").inc()
        eid = error_id()  # the exception text stays in the log (it can name files and models)
        logger.exception("error %s: stage %d failed [requests %s]", eid, stage, _ids(windows))
        raise StageUnavailable(
            with_error_id(f"stage{stage} failed for this request's windows; retry later", eid)
        ) from exc


def _ids(windows: Sequence[Window]) -> str:
    """The request ids of a stage call's windows (bounded), for log lines."""
    ids = list(dict.fromkeys(w.request_id for w in windows if w.request_id))
    return ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "") if ids else "unknown"
