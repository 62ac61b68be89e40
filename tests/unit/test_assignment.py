"""Sticky, deterministic, uniform and independent variant assignment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from experiments.assignment import BUCKETS, assign_variant, bucket

pytestmark = pytest.mark.unit

N_USERS = 100_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def users() -> list[str]:
    """100,000 synthetic user ids."""
    return [f"user-{i}" for i in range(N_USERS)]


def test_bucket_range_and_type() -> None:
    values = [bucket("exp", f"u{i}") for i in range(1000)]
    assert all(isinstance(b, int) and 0 <= b < BUCKETS for b in values)
    assert BUCKETS == 10_000


def test_golden_values_pin_the_hash() -> None:
    """Changing the hash would reshuffle every running experiment: these values must never change."""
    assert bucket("v30_vs_v31", "user123") == 3543
    assert bucket("v30_vs_v31", "test_user") == 2132
    assert assign_variant("v30_vs_v31", "user123", 0.5) == "B"  # the seed: user123 -> v3.1


def test_same_user_always_same_variant() -> None:
    for i in range(200):
        first = assign_variant("exp-1", f"u{i}", 0.3)
        assert all(assign_variant("exp-1", f"u{i}", 0.3) == first for _ in range(5))


def test_sticky_across_processes_and_hash_seeds() -> None:
    """Another interpreter with a different PYTHONHASHSEED computes the same buckets."""
    ids = [f"u{i}" for i in range(50)] + ["", "ünïcode", "a:b"]
    code = (
        "import json, sys; from experiments.assignment import bucket; "
        "print(json.dumps([bucket('salt-x', u) for u in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(ids)], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == [bucket("salt-x", u) for u in ids]


def test_b_when_bucket_below_split() -> None:
    for i in range(2000):
        b = bucket("rule", f"u{i}")
        assert assign_variant("rule", f"u{i}", 0.37) == ("B" if b < 3700 else "A")


@pytest.mark.parametrize("split", [0.1, 0.5, 0.9])
def test_share_of_b_matches_split(users: list[str], split: float) -> None:
    share = sum(assign_variant("share-test", u, split) == "B" for u in users) / N_USERS
    assert abs(share - split) < 0.01


def test_buckets_are_uniform(users: list[str]) -> None:
    """Chi-square goodness of fit of 100k buckets over 100 equal bins."""
    counts = np.bincount([bucket("uniform", u) // 100 for u in users], minlength=100)
    assert sps.chisquare(counts).pvalue > 1e-4


def test_two_experiments_are_independent(users: list[str]) -> None:
    """Assignment in one experiment says nothing about assignment in another (different salt)."""
    a = np.array([assign_variant("exp-one", u, 0.5) == "B" for u in users])
    b = np.array([assign_variant("exp-two", u, 0.5) == "B" for u in users])
    agreement = float((a == b).mean())
    assert abs(agreement - 0.5) < 0.01
    table = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    assert sps.chi2_contingency(table).pvalue > 1e-4


def test_same_salt_gives_same_assignment(users: list[str]) -> None:
    """The salt (not the experiment object) decides: same salt, same buckets."""
    assert [bucket("s", u) for u in users[:1000]] == [bucket("s", u) for u in users[:1000]]
    assert [bucket("s", u) for u in users[:1000]] != [bucket("t", u) for u in users[:1000]]
