"""Sample ratio mismatch (issue 26): an anytime-valid sequential multinomial test of users per variant.

Lindon & Malek (2022), "Anytime-Valid Inference for Multinomial Count Data": under the configured
split the Dirichlet-multinomial Bayes factor of the running counts is a nonnegative martingale, so by
Ville's inequality it ever reaches 1/alpha with probability at most alpha, however often it is read.
Pure (numpy, math): serving processes import it; docs/statistics.md reports its simulated error rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

ALPHA = 0.001
CONCENTRATION = 100.0  # Dirichlet prior = 100 x the expected shares: a 50/50 split's B share has prior sd 0.05
RULE = "Dirichlet-multinomial e-value (Lindon & Malek 2022) >= 1/alpha; prior concentration {c:g} x expected shares"
_MAX_LOG = math.log(np.finfo(np.float64).max)
_lgamma = np.frompyfunc(math.lgamma, 1, 1)


def lgamma(x: np.ndarray | float) -> np.ndarray:
    """log Gamma elementwise (math.lgamma, as scipy.special.gammaln for x > 0) without importing scipy."""
    return np.asarray(_lgamma(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def log_e_value(
    counts: np.ndarray | list[int], shares: np.ndarray | list[float], concentration: float = CONCENTRATION
) -> np.ndarray:
    """log e: log B(a + x) - log B(a) - x . log p, a = concentration x p, p = shares (> 0) normalised; groups last."""
    x = np.asarray(counts, dtype=np.float64)
    p = np.asarray(shares, dtype=np.float64)
    p = p / p.sum()
    if not (p > 0).all():
        raise ValueError("every share must be > 0 (a group without a share is a mismatch by itself)")
    a = concentration * p
    log_beta_prior = float(np.sum(lgamma(a)) - lgamma(concentration))
    log_beta_post = np.sum(lgamma(a + x), axis=-1) - lgamma(concentration + x.sum(axis=-1))
    return log_beta_post - log_beta_prior - x @ np.log(p)


def srm_check(
    counts: Mapping[str, int],
    expected_shares: Mapping[str, float],
    alpha: float = ALPHA,
    concentration: float = CONCENTRATION,
) -> dict[str, Any]:
    """Anytime-valid SRM check of the current users per group against the split: flagged when e >= 1/alpha."""
    unknown = set(counts) - set(expected_shares)
    if unknown:
        raise ValueError(f"counts for groups without an expected share: {sorted(unknown)}")
    shares = {g: float(s) for g, s in expected_shares.items()}
    if any(not math.isfinite(s) or s < 0 for s in shares.values()) or sum(shares.values()) <= 0:
        raise ValueError("expected shares must be finite, >= 0 and not all 0")
    if not (0 < alpha < 1 and concentration > 0):
        raise ValueError(f"alpha must be in (0, 1) and concentration > 0, got {alpha!r}, {concentration!r}")
    n = {g: int(counts.get(g, 0)) for g in shares}
    if any(c < 0 for c in n.values()):
        raise ValueError("counts must be >= 0")
    total = sum(n.values())
    # p_value = min(1, 1/e) is anytime-valid too; e_value None: infinite or past the float range (p_value 0.0).
    # chi2 (Pearson's statistic) is descriptive: its p-value is valid for one read only.
    out: dict[str, Any] = {"chi2": None, "p_value": None, "e_value": None, "flagged": False, "threshold": alpha,
                           "total": total, "rule": RULE.format(c=concentration)}  # fmt: skip
    if total == 0:
        return out | {"p_value": 1.0, "e_value": 1.0}
    if any(s == 0 and n[g] > 0 for g, s in shares.items()):
        return out | {"p_value": 0.0, "flagged": True}  # users in a group with no share: impossible under the split
    live = [g for g, s in shares.items() if s > 0]
    x = np.array([n[g] for g in live], dtype=np.float64)
    p = np.array([shares[g] for g in live]) / sum(shares[g] for g in live)
    log_e = float(log_e_value(x, p, concentration))
    chi2 = float(np.sum((x - total * p) ** 2 / (total * p)))
    e = math.exp(log_e) if log_e < _MAX_LOG else None
    p_value = math.exp(-log_e) if log_e > 0 else 1.0
    return out | {"chi2": chi2, "p_value": p_value, "e_value": e, "flagged": log_e >= -math.log(alpha)}


def since_reset(users: Mapping[str, int], baseline: Mapping[str, int] | None) -> dict[str, int]:
    """Users per group counted beyond the last reset's (all of them without one). Under the split, the users
    first seen after a reset are assigned independently of those before, so the test restarts on them."""
    if not baseline:
        return dict(users)
    return {g: max(int(n) - int(baseline.get(g, 0)), 0) for g, n in users.items()}


def standing(check: Mapping[str, Any], record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The check as it stands with the stored record (experiments.SrmStore): once a read has flagged, the flag
    stands (`flagged` true, `flagged_at` and the check of that read in `flag`) whatever later reads say, until
    an admin reset; `p_value` is then at most the flagging read's (an alert on it keeps firing)."""
    record = record or {}
    out = {**check, "flagged_at": record.get("flagged_at"), "flag": record.get("flag"),
           "reset_at": record.get("reset_at"), "baseline": record.get("baseline")}  # fmt: skip
    first = record.get("flag")
    if record.get("flagged_at") is not None and isinstance(first, Mapping):
        p = [x for x in (check.get("p_value"), first.get("p_value")) if isinstance(x, int | float)]
        out |= {"flagged": True, "p_value": min(p) if p else 0.0}
    return out


def flag_record(check: Mapping[str, Any], users: Mapping[str, int], counted: Mapping[str, int]) -> dict[str, Any]:
    """What a flag stores: the flagging read's users (all, and those the test counted beyond a reset) and figures."""
    keep = ("p_value", "e_value", "threshold", "total", "rule")
    return {"users": dict(users), "counted": dict(counted), **{k: check.get(k) for k in keep}}
