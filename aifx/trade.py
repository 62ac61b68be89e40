"""The one trade rule: levels, outcome and pip sizes, shared by training labels, backtest and service.

A long or short opens at the close of bar t with take profit at 2 x ATR14 + 1 pip and stop loss at
1 x ATR14; bars t+1..t+12 decide it: a bar touching the stop is a stop (even if it also touches
the take profit), else a bar reaching the take profit is a hit; neither in 12 bars is a timeout,
closed at the close of bar t+12. Pips are after a cost. numpy only: the serving process imports it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

LONG, SHORT = "long", "short"
SIDES = {LONG: 1, SHORT: -1}
HIT, STOP, TIMEOUT = "hit", "stop", "timeout"
RESULT_CODES = {HIT: 1.0, STOP: -1.0, TIMEOUT: 0.0}  # the codes of outcomes(); NaN = undefined

JPY_PIP = 0.01
_FOUR_DIGIT = (
    "EUR/USD", "GBP/USD", "AUD/USD", "NZD/USD", "USD/CHF", "USD/CAD",
    "EUR/GBP", "EUR/CHF", "EUR/AUD", "EUR/CAD", "EUR/NZD",
    "GBP/CHF", "GBP/AUD", "GBP/CAD", "GBP/NZD",
    "AUD/CHF", "AUD/CAD", "AUD/NZD", "NZD/CHF", "NZD/CAD", "CAD/CHF",
    "USD/SGD", "USD/HKD", "USD/NOK", "USD/SEK", "USD/DKK", "EUR/NOK", "EUR/SEK",
)  # fmt: skip
_JPY = ("USD/JPY", "EUR/JPY", "GBP/JPY", "AUD/JPY", "NZD/JPY", "CAD/JPY", "CHF/JPY", "SGD/JPY", "HKD/JPY",
        "NOK/JPY", "SEK/JPY", "ZAR/JPY", "MXN/JPY", "TRY/JPY")  # fmt: skip
PIP_SIZES: Mapping[str, float] = MappingProxyType(
    {**dict.fromkeys(_FOUR_DIGIT, 0.0001), **dict.fromkeys(_JPY, JPY_PIP)}
)
_PAIR = re.compile(r"[A-Z0-9]{2,10}/[A-Z0-9]{2,10}")


class UnknownPair(ValueError):
    """A pair without a known pip size; the message says how to configure one."""


@functools.lru_cache(maxsize=1024)  # three or four calls per request; bounded whatever pairs clients send
def normalise_pair(pair: str) -> str:
    """'EURUSD', 'eur_usd', 'EUR-USD' -> 'EUR/USD'."""
    name = pair.strip().upper().replace("_", "/").replace("-", "/")
    if "/" not in name and len(name) == 6:
        name = f"{name[:3]}/{name[3:]}"
    if not _PAIR.fullmatch(name):
        raise UnknownPair(f"{pair!r} is not a currency pair; write it as BASE/QUOTE, e.g. 'EUR/USD' or 'EURUSD'")
    return name


def pip_size(pair: str, extra: Mapping[str, float] | None = None) -> float:
    """The pip size of a pair: configured extra pairs first, then the table, then any */JPY (0.01)."""
    name = normalise_pair(pair)
    configured = {normalise_pair(k): v for k, v in (extra or {}).items()}
    if name in configured:
        return _checked_pip(name, configured[name])
    if name in PIP_SIZES:
        return PIP_SIZES[name]
    if name.endswith("/JPY"):
        return JPY_PIP
    raise UnknownPair(
        f"unknown pair {name!r} (given as {pair!r}): its pip size is not known. Known: {', '.join(PIP_SIZES)} "
        f"and any pair quoted in JPY. Configure it as an extra pip size, a mapping of pair to pip size, "
        f'e.g. {{"{name}": 0.0001}}'
    )


def _checked_pip(name: str, value: float) -> float:
    """A configured pip size must be a positive finite number."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"pip size of {name} must be a positive number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TradeRule:
    """Barriers in ATR multiples (take profit plus extra pips), horizon in bars, cost in pips."""

    take_profit_atr: float = 2.0
    stop_loss_atr: float = 1.0
    horizon_bars: int = 12
    take_profit_extra_pips: float = 1.0
    cost_pips: float = 1.0

    def __post_init__(self) -> None:
        if not (self.take_profit_atr > 0 and self.stop_loss_atr > 0):
            raise ValueError("take_profit_atr and stop_loss_atr must be positive")
        if not (isinstance(self.horizon_bars, int) and self.horizon_bars >= 1):
            raise ValueError(f"horizon_bars must be a positive integer, got {self.horizon_bars!r}")
        if not (math.isfinite(self.take_profit_extra_pips) and math.isfinite(self.cost_pips)):
            raise ValueError("take_profit_extra_pips and cost_pips must be finite")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class TradeLevels:
    """What a client trades: entry, take profit, stop loss, and how many bars it lasts."""

    entry: float
    take_profit: float
    stop_loss: float
    horizon_bars: int

    def to_dict(self) -> dict[str, object]:
        # Spelled out: dataclasses.asdict deep-copies field by field (~5 us), once per long or short answered.
        return {"entry": self.entry, "take_profit": self.take_profit, "stop_loss": self.stop_loss,
                "horizon_bars": self.horizon_bars}  # fmt: skip


@dataclass(frozen=True)
class TradeResult:
    """How a trade ended: 'hit', 'stop' or 'timeout', its exit price, pips before and after cost."""

    result: str
    exit_price: float
    gross_pips: float
    pips: float


def _sign(side: str) -> int:
    if side not in SIDES:
        raise ValueError(f"side must be 'long' or 'short', got {side!r}")
    return SIDES[side]


def _barriers(entry: Any, atr: Any, sign: int, pip: float, rule: TradeRule) -> tuple[Any, Any]:
    """Take profit and stop loss for floats or arrays alike (the same float operations in both)."""
    take_profit = entry + sign * (rule.take_profit_atr * atr) + sign * (rule.take_profit_extra_pips * pip)
    stop_loss = entry - sign * (rule.stop_loss_atr * atr)
    return take_profit, stop_loss


def _touches(sign: int, high: Any, low: Any, take_profit: Any, stop_loss: Any) -> tuple[Any, Any]:
    """(target reached, stop touched) per bar, for floats or arrays."""
    if sign > 0:
        return high >= take_profit, low <= stop_loss
    return low <= take_profit, high >= stop_loss


def _check_pip(pip: float) -> None:
    if not (math.isfinite(pip) and pip > 0):
        raise ValueError(f"pip must be finite and positive, got {pip!r}")


def _check_inputs(entry: float, atr: float, pip: float) -> None:
    if not math.isfinite(entry):
        raise ValueError(f"entry must be finite, got {entry!r}")
    if not (math.isfinite(atr) and atr > 0):
        raise ValueError(f"atr must be finite and positive, got {atr!r}")
    _check_pip(pip)


def levels(entry: float, atr: float, side: str, pip: float, rule: TradeRule = TradeRule()) -> TradeLevels:
    """Levels of a long or short opened at entry (the close of the signal bar)."""
    sign = _sign(side)
    _check_inputs(entry, atr, pip)
    take_profit, stop_loss = _barriers(float(entry), float(atr), sign, pip, rule)
    return TradeLevels(float(entry), float(take_profit), float(stop_loss), rule.horizon_bars)


def resolve(
    side: str,
    entry: float,
    atr: float,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    pip: float,
    rule: TradeRule = TradeRule(),
) -> TradeResult:
    """Outcome of a trade opened at the close of bar t, from the bars t+1..t+horizon (more are ignored)."""
    lv = levels(entry, atr, side, pip, rule)
    sign, n = SIDES[side], rule.horizon_bars
    bars = [np.asarray(a, dtype=np.float64)[:n] for a in (high, low, close)]
    if min(len(b) for b in bars) < n:
        raise ValueError(f"resolve needs the {n} bars after the entry bar, got {min(len(b) for b in bars)}")
    if not all(np.isfinite(b).all() for b in bars):
        raise ValueError("high, low and close of the horizon bars must be finite")
    target, stop = _touches(sign, bars[0], bars[1], lv.take_profit, lv.stop_loss)
    touched = np.flatnonzero(target | stop)
    if touched.size == 0:
        result, exit_price = TIMEOUT, float(bars[2][-1])
    elif stop[touched[0]]:
        result, exit_price = STOP, lv.stop_loss
    else:
        result, exit_price = HIT, lv.take_profit
    gross = sign * (exit_price - lv.entry) / pip
    return TradeResult(result, exit_price, float(gross), float(gross - rule.cost_pips))


def side_outcomes(
    side: str,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    atr: np.ndarray,
    pip: float,
    rule: TradeRule = TradeRule(),
) -> tuple[np.ndarray, np.ndarray]:
    """resolve() on every bar of a series at once: (result codes, pips after cost), NaN where undefined."""
    sign, n = _sign(side), rule.horizon_bars
    _check_pip(pip)
    high, low, close, atr = (np.asarray(a, dtype=np.float64) for a in (high, low, close, atr))
    codes, pips = np.full(len(close), np.nan), np.full(len(close), np.nan)
    m = len(close) - n  # bars 0..m-1 have n bars after them
    if m <= 0:
        return codes, pips
    after_h, after_l, after_c = (np.lib.stride_tricks.sliding_window_view(a[1:], n) for a in (high, low, close))
    entry, atr = close[:m], atr[:m]
    take_profit, stop_loss = _barriers(entry, atr, sign, pip, rule)
    code = _first_result(*_touches(sign, after_h, after_l, take_profit[:, None], stop_loss[:, None]))
    exit_price = np.select(
        [code == RESULT_CODES[HIT], code == RESULT_CODES[STOP]], [take_profit, stop_loss], after_c[:, -1]
    )
    ok = np.isfinite(entry) & np.isfinite(atr) & (atr > 0)
    ok &= np.isfinite(after_h).all(1) & np.isfinite(after_l).all(1) & np.isfinite(after_c).all(1)
    codes[:m] = np.where(ok, code, np.nan)
    pips[:m] = np.where(ok, sign * (exit_price - entry) / pip - rule.cost_pips, np.nan)
    return codes, pips


def _first_result(target: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Per row of bars: the code of the first bar touching a barrier, the stop winning a tie; else timeout."""
    either = target | stop
    stop_first = stop[np.arange(len(stop)), either.argmax(axis=1)]
    decided = np.where(stop_first, RESULT_CODES[STOP], RESULT_CODES[HIT])
    return np.where(either.any(axis=1), decided, RESULT_CODES[TIMEOUT])


def outcomes(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, atr: np.ndarray, pip: float, rule: TradeRule = TradeRule()
) -> tuple[np.ndarray, np.ndarray]:
    """Result codes of a long and of a short opened at every bar (1 hit, -1 stop, 0 timeout, NaN undefined)."""
    long_codes, _ = side_outcomes(LONG, high, low, close, atr, pip, rule)
    short_codes, _ = side_outcomes(SHORT, high, low, close, atr, pip, rule)
    return long_codes, short_codes
