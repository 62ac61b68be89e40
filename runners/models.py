"""Class-scope model declarations of the entry service, from what the model store holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import bentoml
from bentoml.exceptions import NotFound

from aifx.versions import model_name

T = TypeVar("T", bound=type)


def attribute_name(version: str, stage: int) -> str:
    """Class attribute holding one version's model reference, e.g. model_v3_1_stage1."""
    return f"model_{version.replace('.', '_').replace('-', '_')}_stage{stage}"


def in_store(version: str, stage: int) -> bool:
    """Whether the current model store (the Bento's when serving a Bento) has this model."""
    try:
        bentoml.models.get(model_name(version, stage))
    except NotFound:
        return False
    return True


def stored_model(version: str, stage: int) -> Any | None:
    """The store's latest model of a version's stage, or None: how a version imported after the start is found
    (it has no class-scope reference, so `bentoml build` does not pack it; build again to ship it)."""
    try:
        return bentoml.models.get(model_name(version, stage))
    except NotFound:
        return None


def declare_models(versions: Sequence[str], stages: Sequence[int] = (1, 2)) -> Callable[[T], T]:
    """Put a BentoModel per stored (version, stage) on the class so `bentoml build` packs it.

    Models missing from the store are left out (a missing model would stop the server from
    starting); the runners record them as not loaded instead. `cls.model_refs[stage][version]`.
    """

    def decorate(cls: T) -> T:
        refs: dict[int, dict[str, Any]] = {stage: {} for stage in stages}
        for stage in stages:
            for version in versions:
                if in_store(version, stage):
                    ref = bentoml.models.BentoModel(model_name(version, stage))
                    setattr(cls, attribute_name(version, stage), ref)
                    refs[stage][version] = ref
        cls.model_refs = refs  # type: ignore[attr-defined]
        return cls

    return decorate
