"""Worker supervision: the arbiter replaces a dead service worker within about a second.

BentoML creates its circus arbiter with a 10 s check delay (it works around runner health checks
that no longer exist here), and circus spawns replacements only on those checks: a killed worker
stayed dead for up to 10 s, and the survivor carried all traffic meanwhile. `bentoml serve` runs the
service's `on_deployment` hook before it creates the arbiter, so the hook replaces the arbiter class
(BentoML is pinned in requirements.lock; tests/integration/test_faults.py measures the respawn).
"""

from __future__ import annotations

from typing import Any

CHECK_DELAY_SECONDS = 0.5


def quicken_respawn(check_delay: float = CHECK_DELAY_SECONDS) -> None:
    """Make the arbiter `bentoml serve` is about to create check its workers every `check_delay` seconds."""
    from bentoml._internal.utils import circus

    base = circus.Arbiter
    if getattr(base, "aifx_check_delay", None) is not None:
        return

    class QuickArbiter(base):  # type: ignore[misc, valid-type]
        aifx_check_delay = check_delay

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["check_delay"] = min(float(kwargs.get("check_delay", check_delay)), check_delay)
            super().__init__(*args, **kwargs)

    circus.Arbiter = QuickArbiter  # type: ignore[misc]
