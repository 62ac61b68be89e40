"""The service: wiring only. Declares the stage models, composes the runners in process, mounts the REST API and
declares the native APIs."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import bentoml
from starlette.responses import Response

from aifx.http import native
from aifx.http.bootstrap import app, at_import, attach, build, detach, start_serving, start_worker
from aifx.http.hot_routes import HotRoutes
from aifx.http.responses import (
    BatchData,
    CompareData,
    ExperimentMetricsData,
    ModelInfo,
    ModelsData,
    PredictionData,
    SwitchData,
)
from aifx.http.route_labels import BoundedLabelsService, on_worker_start
from aifx.serving.schemas import BatchRequest, CompareRequest, PredictRequest
from runners.models import declare_models
from runners.stage import DirectionClassifier, ReversalDetector

ROUTES = native.ROUTES
VERSIONS = at_import()  # the only settings read at import: the logs, and the versions of the models declared below
# BentoML samples no traces by default, yet its OpenTelemetry middleware still costs CPU on every request. With
# every URL excluded, aifx/http/lean_app.py leaves it out; configure tracing in BENTOML_CONFIG to turn it back on.
NO_TRACING: dict[str, Any] = {"excluded_urls": [".*"]}


@bentoml.service(
    service_class=BoundedLabelsService,
    workers=2,  # one per core: the stage models run in each worker's process (docs/performance.md)
    # max_concurrency is per service, split over the workers (128 each; more get BentoML's 429). Memory of
    # bodies is bounded apart from it (AIFX_BODY_BUDGET_BYTES); 512 concurrent 64-candle predictions grew the
    # whole process tree by ~30 MB, and 64 concurrent 1 MB hostile bodies stay under 2 GB
    # (tests/integration/test_hostile_bodies.py). 128 per worker keeps `make bench` at 64 from ever seeing 429.
    traffic={"timeout": 30, "max_concurrency": 256},
    tracing=NO_TRACING,
)
@bentoml.asgi_app(app, path="/")
@declare_models(VERSIONS)  # a BentoModel per stored (version, stage) at class scope: `bentoml build` packs them
class ReversalEngine:
    """The AIFX Reversal Engine: seed routes and native APIs over Stage 1 and Stage 2 (run where Stage 1 fires)."""

    model_refs: ClassVar[dict[int, dict[str, Any]]] = {}  # stage -> version -> BentoModel, set by declare_models

    @bentoml.on_deployment
    def check_settings() -> None:
        """`bentoml serve`, before it starts the workers: refuse invalid settings, set up fast respawn."""
        start_serving()

    @on_worker_start
    def assemble_app() -> None:
        """Each worker, as it builds its ASGI app: settings, trusted proxies, the REST app's guards."""
        start_worker()

    def __init__(self) -> None:
        self.detector = ReversalDetector(VERSIONS, self.model_refs[1])
        self.direction = DirectionClassifier(VERSIONS, self.model_refs[2])
        self.parts = build(self.detector, self.direction)

    @bentoml.on_startup
    async def serve_routes(self) -> None:
        """Attach the registry, predictor and A/B tests to the routes; log what loaded once the stages answer."""
        attach(self.parts)

    @bentoml.on_shutdown
    def flush_outcomes(self) -> None:
        """SIGTERM: every queued evaluation row is written before the worker exits."""
        detach(self.parts)

    @bentoml.api(route=ROUTES["predict"], input_spec=PredictRequest, output_spec=PredictionData)
    async def predict(self, ctx: bentoml.Context, **body: Any) -> PredictionData | Response:
        """Predict a reversal signal from the latest candles (as POST /reversal/predict)."""
        return await native.answer(ctx, lambda: native.predict(self.parts, ctx.request, body))

    @bentoml.api(route=ROUTES["predict_batch"], input_spec=BatchRequest, output_spec=BatchData)
    async def predict_batch(self, ctx: bentoml.Context, **body: Any) -> BatchData | Response:
        """Many predict requests in one call; each item succeeds or fails on its own."""
        return await native.answer(ctx, lambda: native.predict_batch(self.parts, ctx.request, body))

    @bentoml.api(route=ROUTES["compare"], input_spec=CompareRequest, output_spec=CompareData)
    async def compare(self, ctx: bentoml.Context, **body: Any) -> CompareData | Response:
        """The same input through several versions, with consensus and disagreement."""
        return await native.answer(ctx, lambda: native.compare(self.parts, body))

    @bentoml.api(route=ROUTES["list_models"], output_spec=ModelsData)
    async def list_models(self, ctx: bentoml.Context) -> ModelsData | Response:
        """Active version, default, fallback order and every configured version with its metrics."""
        return await native.answer(ctx, lambda: native.list_models(self.parts))

    @bentoml.api(route=ROUTES["describe_model"], input_spec=native.VersionInput, output_spec=ModelInfo)
    async def describe_model(self, ctx: bentoml.Context, version: str) -> ModelInfo | Response:
        """One version: stages, threshold, features, window, label parameters, metrics."""
        return await native.answer(ctx, lambda: native.describe_model(self.parts, version))

    @bentoml.api(
        route=ROUTES["experiment_metrics"], input_spec=native.ExperimentInput, output_spec=ExperimentMetricsData
    )
    async def experiment_metrics(self, ctx: bentoml.Context, experiment_id: str) -> ExperimentMetricsData | Response:
        """Per-variant counts, outcomes and the B-vs-A tests of an experiment."""
        return await native.answer(ctx, lambda: native.experiment_metrics(self.parts, experiment_id))

    @bentoml.api(route=ROUTES["switch_model"], input_spec=native.VersionInput, output_spec=SwitchData)
    async def switch_model(self, ctx: bentoml.Context, version: str) -> SwitchData | Response:
        """Admin (bearer AIFX_ADMIN_TOKEN): make a version active in every worker."""
        return await native.answer(ctx, lambda: native.switch_model(self.parts, ctx.request, version))


cast("bentoml.Service[Any]", ReversalEngine).add_asgi_middleware(native.NativeGuards, rest=app)
# Predict and batch below the REST app's router, through its own middlewares and handlers (aifx/http/hot_routes.py).
cast("bentoml.Service[Any]", ReversalEngine).add_asgi_middleware(HotRoutes, rest=app)
