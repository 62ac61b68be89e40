"""Entry service: wiring only. Composes the two stage services and mounts the REST API."""

from __future__ import annotations

import bentoml

from aifx.api.asgi import BoundedLabelsService
from aifx.api.bootstrap import app, attach, build
from runners.detector import ReversalDetector
from runners.direction import DirectionClassifier
from runners.inference import NO_TRACING


@bentoml.service(
    service_class=BoundedLabelsService,
    workers=2,  # the entry's own work is the bottleneck once stages run LiteRT (docs/performance.md)
    # max_concurrency is per service, split over the workers (128 each; more get BentoML's 429). Memory of
    # bodies is bounded apart from it (AIFX_BODY_BUDGET_BYTES); 512 concurrent 64-candle predictions grew the
    # whole process tree by ~30 MB, and 64 concurrent 1 MB hostile bodies stay under 2 GB
    # (tests/integration/test_hostile_bodies.py). 128 per worker keeps `make bench` at 64 from ever seeing 429.
    traffic={"timeout": 30, "max_concurrency": 256},
    tracing=NO_TRACING,
)
@bentoml.asgi_app(app, path="/")
class ReversalEngine:
    """The AIFX Reversal Engine: seed routes over Stage 1 and Stage 2 (called only when Stage 1 fires)."""

    detector = bentoml.depends(ReversalDetector)
    direction = bentoml.depends(DirectionClassifier)

    def __init__(self) -> None:
        self.parts = build(self.detector, self.direction)

    @bentoml.on_startup
    async def serve_routes(self) -> None:
        """Attach the registry, predictor and A/B tests to the routes; log what loaded once the stages answer."""
        attach(self.parts)
