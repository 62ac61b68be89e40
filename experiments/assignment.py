"""Deterministic, sticky variant assignment: hash(salt, user) into 10,000 buckets."""

from __future__ import annotations

import hashlib
from typing import Literal

BUCKETS = 10_000
Variant = Literal["A", "B"]


def bucket(salt: str, user_id: str) -> int:
    """Stable bucket in [0, 10000) from sha256 of f"{salt}:{user_id}" (same in every process)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign_variant(salt: str, user_id: str, traffic_split: float) -> Variant:
    """Variant "B" when the user's bucket < traffic_split * 10000, else "A"."""
    return "B" if bucket(salt, user_id) < traffic_split * BUCKETS else "A"
