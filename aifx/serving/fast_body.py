"""The hot routes' bodies read by msgspec when they take the common form; pydantic reads everything else.

msgspec decodes a batch of 100 items of 64 candles in about a quarter of pydantic-core's time
(docs/performance.md, issue 27). It reads only a narrower form than the schema: an item's keys are
pair, timeframe, data (at least one candle), version and user_id; a candle's are the six of CandleIn
(others dropped, as the schema drops them), read into a FastCandle struct, not a dict (inputs reads
both); every constraint is the schema's. Whatever it accepts,
pydantic accepts with the same values and set fields (tests/unit/test_fast_body.py holds it to that
with hypothesis); anything else, every error included, returns None and goes to pydantic, whose
messages stay the API's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from aifx.serving.schemas import (
    MAX_BATCH_ITEMS,
    MAX_CANDLES,
    USER_ID_LEN,
    BatchRequest,
    FastCandle,
    PredictRequest,
    _printable_user_id,
)


class _Item(msgspec.Struct, forbid_unknown_fields=True):
    pair: Annotated[str, Meta(min_length=1, max_length=32)]
    timeframe: Annotated[str, Meta(min_length=1, max_length=16)]
    data: Annotated[list[FastCandle], Meta(min_length=1, max_length=MAX_CANDLES)]
    version: Annotated[str, Meta(max_length=64)] | None | UnsetType = UNSET
    user_id: Annotated[str, Meta(min_length=1, max_length=USER_ID_LEN)] | None | UnsetType = UNSET


class _Batch(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[_Item], Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


_ITEM = msgspec.json.Decoder(_Item)
_BATCH = msgspec.json.Decoder(_Batch)
_OPTIONAL = ("version", "user_id")


def _request(item: _Item) -> PredictRequest | None:
    """The PredictRequest pydantic would build from the item (None: a user id that its validator refuses)."""
    if isinstance(item.user_id, str):
        try:
            _printable_user_id(item.user_id)  # the schema's own check
        except ValueError:
            return None  # pydantic words the message
    fields: dict[str, Any] = {"pair": item.pair, "timeframe": item.timeframe, "data": item.data}
    for name in _OPTIONAL:
        value = getattr(item, name)
        if value is not UNSET:
            fields[name] = value
    # Constructed, not validated: the values are already checked against the schema's own constraints above.
    return _construct(fields)


def _construct(fields: dict[str, Any]) -> PredictRequest:
    """PredictRequest.model_construct(set(fields), **fields) in its four steps (a third of its ~5.5 us): every
    field it does not set defaults to None, and the model has no extras, private attributes or post-init."""
    req = PredictRequest.__new__(PredictRequest)
    _set(req, "__dict__", {name: fields.get(name) for name in _FIELDS})
    _set(req, "__pydantic_fields_set__", set(fields))
    _set(req, "__pydantic_extra__", None)
    _set(req, "__pydantic_private__", None)
    return req


_set = object.__setattr__
_FIELDS = tuple(PredictRequest.model_fields)
# What _construct relies on, checked once: a change to the schema that breaks it fails at import, not quietly.
if not (
    all(f.is_required() or f.default is None for f in PredictRequest.model_fields.values())
    and not PredictRequest.__private_attributes__
    and PredictRequest.__pydantic_post_init__ is None
    and PredictRequest.model_config.get("extra") != "allow"
):
    raise RuntimeError("PredictRequest changed: fast_body._construct no longer builds what model_construct builds")


def predict_request(raw: bytes) -> PredictRequest | None:
    """POST /reversal/predict's body in the common form; None: pydantic reads it."""
    try:
        return _request(_ITEM.decode(raw))
    except msgspec.DecodeError:
        return None


def batch_request(raw: bytes) -> BatchRequest | None:
    """POST /reversal/predict/batch's body when every item takes the common form; None: pydantic reads it."""
    try:
        batch = _BATCH.decode(raw)
    except msgspec.DecodeError:
        return None
    items = [_request(item) for item in batch.items]
    if any(item is None for item in items):
        return None
    return BatchRequest.model_construct({"items"}, items=items)


FAST: dict[type[Any], Callable[[bytes], Any]] = {PredictRequest: predict_request, BatchRequest: batch_request}
