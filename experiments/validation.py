"""Input checks that raise Invalid with a message saying what is wrong and what is expected."""

from __future__ import annotations

import json
import math
import numbers
import re
import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from experiments.errors import Invalid
from experiments.records import as_utc
from experiments.schema import (
    ID_LEN,
    IDEMPOTENCY_KEY_LEN,
    MAX_ABS_PIPS,
    PAIR_LEN,
    SIGNALS,
    SOURCE_LEN,
    TIMEFRAME_LEN,
    TIMEFRAME_PATTERN,
    USER_ID_LEN,
)

ID_RE = re.compile(rf"^[A-Za-z0-9_.-]{{1,{ID_LEN}}}$")
VERSION_RE = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{ID_LEN}}}$")
NAME_LEN = 200
DESCRIPTION_LEN = 2000


def check_id(value: Any, field: str = "experiment_id") -> str:
    """1-64 characters of [A-Za-z0-9_.-]."""
    if not isinstance(value, str) or not ID_RE.match(value):
        raise Invalid(f"{field} must be 1-{ID_LEN} characters of A-Z a-z 0-9 _ . - (got {value!r:.80})")
    return value


def check_version(value: Any, field: str) -> str:
    """A model version string: 1-64 characters of [A-Za-z0-9_.:-]."""
    if not isinstance(value, str) or not VERSION_RE.match(value):
        raise Invalid(f"{field} must be a model version of 1-{ID_LEN} characters A-Z a-z 0-9 _ . : -")
    return value


def check_text(value: Any, field: str, max_len: int, required: bool) -> str:
    """A string of at most max_len characters (non-blank when required)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str) or len(value) > max_len or (required and not value.strip()):
        need = "a non-empty string" if required else "a string"
        raise Invalid(f"{field} must be {need} of at most {max_len} characters")
    return value


def check_split(value: Any) -> float:
    """traffic_split: a number strictly between 0 and 1 (share of users sent to variant B)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 < value < 1.0:
        raise Invalid(f"traffic_split must be a number strictly between 0 and 1 (got {value!r:.40})")
    return float(value)


def check_user_id(value: Any) -> str:
    """A non-empty user id of at most 256 printable characters (no NUL or other control characters)."""
    if not isinstance(value, str) or not value or len(value) > USER_ID_LEN or not value.isprintable():
        raise Invalid(f"user_id must be 1-{USER_ID_LEN} printable characters")
    return value


def check_signal(value: Any) -> str:
    """One of long, short, hold."""
    if value not in SIGNALS:
        raise Invalid(f"signal must be one of {', '.join(SIGNALS)} (got {value!r:.40})")
    return str(value)


def check_variant(value: Any) -> str:
    """ "A" or "B"."""
    if value not in ("A", "B"):
        raise Invalid(f'variant must be "A" or "B" (got {value!r:.40})')
    return str(value)


def check_probability(value: Any, field: str, required: bool = True) -> float | None:
    """A number in [0, 1] (None allowed when not required)."""
    if value is None and not required:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise Invalid(f"{field} must be a number between 0 and 1 (got {value!r:.40})")
    return float(value)


def check_pips(value: Any) -> float:
    """A finite number of at most MAX_ABS_PIPS in size (realized result in pips; a hit is pips > 0)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or abs(value) > MAX_ABS_PIPS:
        raise Invalid(f"pips must be a finite number between -{MAX_ABS_PIPS} and {MAX_ABS_PIPS} (got {value!r:.40})")
    return float(value)


KEY_RE = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{IDEMPOTENCY_KEY_LEN}}}$")


def check_idempotency_key(value: Any) -> str | None:
    """None, or 1-128 characters of [A-Za-z0-9_.:-] (a UUID fits)."""
    if value is None:
        return None
    if not isinstance(value, str) or not KEY_RE.match(value):
        raise Invalid(f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_LEN} characters of A-Z a-z 0-9 _ . : -")
    return value


def json_object(value: Any, field: str, max_chars: int) -> str:
    """A mapping as compact JSON text: plain JSON without NaN, at most `max_chars` characters."""
    if not isinstance(value, Mapping):
        raise Invalid(f"{field} must be a JSON object (got {type(value).__name__})")
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise Invalid(f"{field} must be plain JSON without NaN: {exc}") from None
    if len(text) > max_chars:
        raise Invalid(f"{field} must be at most {max_chars} characters of JSON (got {len(text)})")
    return text


# -- the evaluation log's values (numpy scalars accepted: the scoring path hands them over) -----------

PAIR_RE = re.compile(rf"^[A-Za-z0-9/_.-]{{1,{PAIR_LEN}}}$")
TIMEFRAME_RE = re.compile(TIMEFRAME_PATTERN)
SOURCE_RE = re.compile(rf"^[A-Za-z0-9_.:-]{{1,{SOURCE_LEN}}}$")


def check_pair(value: Any) -> str:
    """A currency pair: 1-PAIR_LEN characters of [A-Za-z0-9/_.-]."""
    if not isinstance(value, str) or not PAIR_RE.match(value):
        raise Invalid(f"pair must be 1-{PAIR_LEN} characters of A-Z a-z 0-9 / _ . - (got {value!r:.40})")
    return value


def check_timeframe(value: Any) -> str:
    """A timeframe such as 1h: 1-TIMEFRAME_LEN characters of [A-Za-z0-9]."""
    if not isinstance(value, str) or not TIMEFRAME_RE.match(value):
        raise Invalid(f"timeframe must be 1-{TIMEFRAME_LEN} characters of A-Z a-z 0-9 (got {value!r:.40})")
    return value


def check_source(value: Any) -> str:
    """Where trusted candles came from: 1-SOURCE_LEN characters of [A-Za-z0-9_.:-]."""
    if not isinstance(value, str) or not SOURCE_RE.match(value):
        raise Invalid(f"source must be 1-{SOURCE_LEN} characters of A-Z a-z 0-9 _ . : -")
    return value


def check_time(value: Any, field: str) -> datetime:
    """A datetime in UTC (naive values are taken as UTC)."""
    if not isinstance(value, datetime):
        raise Invalid(f"{field} must be a datetime")
    return as_utc(value)


def real(value: Any) -> float | None:
    """The value as a finite float (numpy scalars too), else None."""
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        return None
    x = float(value)
    return x if math.isfinite(x) else None


def check_positive(value: Any, field: str) -> float:
    """A finite number at least the smallest normal double (a subnormal price or ATR overflows every ratio)."""
    x = real(value)
    if x is None or x < sys.float_info.min:
        raise Invalid(f"{field} must be a finite number > 0, not subnormal (got {value!r:.40})")
    return x


def check_unit(value: Any, field: str) -> float:
    """A number in [0, 1], numpy scalars too (a model's probability)."""
    x = real(value)
    if x is None or not 0.0 <= x <= 1.0:
        raise Invalid(f"{field} must be a number between 0 and 1 (got {value!r:.40})")
    return x
