"""Probability calibration maps: fitted in training, stored as JSON beside the scaler, applied when serving.

A map takes a stage's raw network output p to a calibrated probability:
- identity: p unchanged (versions or stages where calibration did not lower the validation Brier score);
- platt: sigmoid(a * logit(clip(p)) + b) with a > 0, so the ranking of windows is kept;
- isotonic: piecewise-linear through increasing knots x with non-decreasing y in [0, 1] (np.interp:
  constant beyond the end knots).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aifx.versions import CALIBRATION_FILE, ModelFileError

IDENTITY, PLATT, ISOTONIC = "identity", "platt", "isotonic"
METHODS = (IDENTITY, PLATT, ISOTONIC)
EPS = 1e-6  # logit clip: a network output of exactly 0 or 1 stays finite
MAX_KNOTS = 10_000


@dataclass(frozen=True)
class Calibration:
    """One stage's calibration map (see the module docstring); invalid parameters raise ModelFileError."""

    method: str = IDENTITY
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    _xa: np.ndarray = field(init=False, repr=False, compare=False)
    _ya: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check(self)
        object.__setattr__(self, "_xa", np.asarray(self.x, dtype=np.float64))
        object.__setattr__(self, "_ya", np.asarray(self.y, dtype=np.float64))

    @property
    def is_identity(self) -> bool:
        return self.method == IDENTITY

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw probabilities p (any shape); a p outside [0, 1] or NaN gives NaN."""
        if self.method == IDENTITY:
            return p
        p = np.asarray(p, dtype=np.float64)
        if self.method == PLATT:
            q = np.clip(p, EPS, 1.0 - EPS)
            out = 1.0 / (1.0 + np.exp(-(self.a * np.log(q / (1.0 - q)) + self.b)))
        else:
            out = np.interp(p, self._xa, self._ya)
        # A broken model's output stays visibly broken (the API refuses it) instead of being clipped into range.
        return np.where((p >= 0.0) & (p <= 1.0), out, np.nan)

    def to_json(self) -> dict[str, Any]:
        if self.method == PLATT:
            return {"method": PLATT, "a": self.a, "b": self.b}
        if self.method == ISOTONIC:
            return {"method": ISOTONIC, "x": list(self.x), "y": list(self.y)}
        return {"method": IDENTITY}

    @classmethod
    def from_json(cls, data: Any) -> Calibration:
        """The map a calibration.json holds; ModelFileError saying what is wrong otherwise."""
        if not isinstance(data, dict):
            raise ModelFileError(f"{CALIBRATION_FILE} must be a JSON object, got {type(data).__name__}")
        method = data.get("method")
        keys = {IDENTITY: {"method"}, PLATT: {"method", "a", "b"}, ISOTONIC: {"method", "x", "y"}}
        if method not in keys:
            raise ModelFileError(f"{CALIBRATION_FILE}: unknown method {method!r}; expected one of {', '.join(METHODS)}")
        if set(data) != keys[method]:
            raise ModelFileError(
                f"{CALIBRATION_FILE}: {method} maps have the keys {sorted(keys[method])}, got {sorted(data)}"
            )
        if method == PLATT:
            return cls(PLATT, a=_number(data["a"], "a"), b=_number(data["b"], "b"))
        if method == ISOTONIC:
            return cls(ISOTONIC, x=_numbers(data["x"], "x"), y=_numbers(data["y"], "y"))
        return cls()


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelFileError(f"{CALIBRATION_FILE}: {name} must be a number, got {value!r}")
    return float(value)


def _numbers(value: Any, name: str) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ModelFileError(f"{CALIBRATION_FILE}: {name} must be a list of numbers")
    return tuple(_number(v, f"{name}[{i}]") for i, v in enumerate(value))


def _check(c: Calibration) -> None:
    """Raise ModelFileError unless the map's parameters are a valid, monotone map into [0, 1]."""
    where = f"{CALIBRATION_FILE} ({c.method})"
    if c.method not in METHODS:
        raise ModelFileError(f"{CALIBRATION_FILE}: unknown method {c.method!r}; expected one of {', '.join(METHODS)}")
    if c.method == PLATT:
        if not (math.isfinite(c.a) and math.isfinite(c.b)):
            raise ModelFileError(f"{where}: a and b must be finite, got a={c.a!r}, b={c.b!r}")
        if c.a <= 0:
            raise ModelFileError(f"{where}: slope a must be positive (a monotone map), got {c.a!r}")
    if c.method != ISOTONIC:
        if c.x or c.y:
            raise ModelFileError(f"{where}: knots x, y belong to isotonic maps only")
        return
    x, y = np.asarray(c.x, dtype=np.float64), np.asarray(c.y, dtype=np.float64)
    if not 2 <= len(x) <= MAX_KNOTS or x.shape != y.shape:
        raise ModelFileError(f"{where}: needs 2 to {MAX_KNOTS:,} knots and as many y as x, got {len(x)} x, {len(y)} y")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ModelFileError(f"{where}: knots must be finite")
    if (np.diff(x) <= 0).any():
        raise ModelFileError(f"{where}: x must be strictly increasing")
    if (np.diff(y) < 0).any():
        raise ModelFileError(f"{where}: y must be non-decreasing (a monotone map)")
    if y[0] < 0 or y[-1] > 1:
        raise ModelFileError(f"{where}: y must lie in [0, 1], got [{y[0]!r}, {y[-1]!r}]")


IDENTITY_MAP = Calibration()
