"""The stage services' wire format: one version's windows stacked into one array per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

_ROWS_SCHEMA = {"type": "array", "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}


class StageBatch(BaseModel):
    """One stage input: a version and its unscaled windows, stacked (n x window x features)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    version: str
    rows: Annotated[np.ndarray, WithJsonSchema(_ROWS_SCHEMA)]
    request_ids: list[str] = Field(default_factory=list, description="the entry request of each window, in order")


class Window(NamedTuple):
    """One request's (window x features) rows for one version."""

    version: str
    rows: np.ndarray
    request_id: str = ""


def group_windows(windows: Sequence[tuple[str, np.ndarray] | Window]) -> tuple[list[StageBatch], list[int]]:
    """One stacked batch per version (first-seen order) and each output position's window index."""
    by_version: dict[str, list[int]] = {}
    for i, window in enumerate(windows):
        by_version.setdefault(window[0], []).append(i)
    batches = [
        StageBatch(
            version=v,
            rows=np.stack([windows[i][1] for i in idx]),
            request_ids=[_request_id(windows[i]) for i in idx],
        )
        for v, idx in by_version.items()
    ]
    return batches, [i for idx in by_version.values() for i in idx]


def ungroup(probs: Sequence[float], order: Sequence[int]) -> list[float]:
    """Probabilities back in window order (inverse of group_windows' order)."""
    out = [0.0] * len(order)
    for p, i in zip(probs, order, strict=True):
        out[i] = p
    return out


def _request_id(window: tuple[str, np.ndarray] | Window) -> str:
    return window[2] if len(window) > 2 else ""  # type: ignore[misc]
