"""Response bodies of the REST API, one named model each, so /docs.json describes every field.

The routes build plain dicts (the fast path) that a test checks against these schemas;
`extra="forbid"` makes the documented schema closed, so an undocumented field fails that test.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import Field

from aifx.http.comparison_responses import PairedComparison
from aifx.http.response_base import Body

T = TypeVar("T")
Signal = Literal["long", "short", "hold"]
Variant = Literal["A", "B"]


class Envelope(Body, Generic[T]):
    """The seed's envelope around every /reversal/* and /predict answer."""

    success: bool
    data: T | None = None
    error: str | None = None
    timestamp: str
    request_id: str | None = Field(default=None, description="on errors: the request's X-Request-ID")


class Factors(Body):
    reversal_detected: bool
    direction: Literal["long", "short"] | None
    direction_source: str | None = Field(default=None, description="'stage 2 model' or the no-Stage-2 rule")
    in_domain: bool | None = Field(
        default=None,
        description="whether the version was trained on the request's pair and timeframe (its `domain`); "
        "null when the version records no domain",
    )


class TradeLevels(Body):
    """The trade the service scores a long or short by (aifx/trade.py): opened at the close of the bar."""

    entry: float = Field(description="close of the request's last candle")
    take_profit: float = Field(description="entry +- (2 x ATR14 + 1 pip)")
    stop_loss: float = Field(description="entry -+ 1 x ATR14; a bar touching both levels is a stop")
    horizon_bars: int = Field(description="otherwise closed at the close of this many bars later")


class PredictionData(Body):
    pair: str
    timeframe: str
    signal: Signal = Field(examples=["long"])
    confidence: float
    stage1_prob: float
    stage2_prob: float | None
    model_version: str
    factors: Factors
    timestamp: str
    prediction_id: str | None = Field(default=None, description="only under an active experiment (with a user id)")
    experiment_id: str | None = Field(default=None, description="only under an active experiment")
    variant: Variant | None = Field(default=None, description="only under an active experiment")
    trade: TradeLevels | None = Field(
        default=None, description="long or short from candles of a known pair: the levels the outcome is scored by"
    )


class BatchResult(Body):
    success: bool
    data: PredictionData | None = None
    error: str | None = None


class BatchData(Body):
    results: list[BatchResult]


class ComparedPrediction(Body):
    signal: Signal
    confidence: float
    stage1_prob: float
    stage2_prob: float | None
    model_version: str
    in_domain: bool | None = Field(
        default=None,
        description="whether the version was trained on the request's pair and timeframe (its `domain`); "
        "null when the version records no domain",
    )


class CompareData(Body):
    pair: str
    timeframe: str
    predictions: dict[str, ComparedPrediction] = Field(description="by model version")
    consensus: Signal | None = Field(description="the signal every version gives, else null")
    disagreement: bool
    timestamp: str


class LegacyFactors(Factors):
    stage1_prob: float
    stage2_prob: float | None
    model_version: str


class LegacyData(Body):
    prediction: Signal
    confidence: float
    factors: LegacyFactors


class Health(Body):
    status: Literal["healthy", "degraded", "unhealthy"] = Field(examples=["healthy"])
    model_loaded: bool
    model_version: str | None
    timestamp: str
    environment: str
    loaded_versions: list[str] = []
    failed_versions: dict[str, str] = Field(default={}, description="version -> why it does not serve")


class StageInfo(Body):
    in_store: bool
    tag: str | None = Field(description="the BentoML model tag")
    loaded: bool
    direction_rule: str | None = Field(default=None, description="stage 2 only: the rule used when it is missing")


class StagesInfo(Body):
    stage1: StageInfo
    stage2: StageInfo


class LiveStats(Body):
    """A version's figures over resolved bars of the evaluation log (README "Outcomes")."""

    resolved: int = Field(description="bars logged for the version and resolved from later candles")
    pending: int
    expired: int = Field(description="bars expired without covering candles, void ones included")
    void: int = Field(description="bars set aside unresolved, each with why (no trusted candle of its own, ...)")
    signals: int = Field(description="resolved bars where the version said long or short")
    hit_rate: float | None = Field(description="share of those signals that reached take profit")
    mean_pips: float | None = Field(description="per signal, after cost")
    stage1_precision: float | None
    stage1_recall: float | None
    brier: float | None = Field(description="Stage 1 probability against the version's own realized label")
    labelled: int = Field(description="resolved bars where the version's own Stage 1 label is defined")
    filters: dict[str, str | None]


class DomainInfo(Body):
    """The pairs and timeframes a version was trained on; requests outside are served with `in_domain: false`."""

    pairs: list[str] = Field(examples=[["EUR/USD"]])
    timeframes: list[str] = Field(examples=[["1h"]])


class ModelInfo(Body):
    version: str
    name: str
    active: bool
    loaded: bool
    error: str | None = Field(description="why the version does not serve, when it does not")
    stages: StagesInfo
    threshold: float | None
    window: int | None
    min_candles: int | None
    features: list[str] = Field(description="feature names in model input order")
    label_params: dict[str, Any] = Field(description="the label scheme's parameters the version was trained with")
    domain: DomainInfo | None = Field(description="pairs and timeframes of the training data; null when not recorded")
    metrics: dict[str, dict[str, Any]] = Field(
        description="stage -> the training report (walk-forward folds and overall, with base rates and split)"
    )
    live: LiveStats | None = Field(
        default=None, description="figures over bars resolved since serving (absent when the outcome loop is off)"
    )


class ModelsData(Body):
    active_version: str | None
    default: str
    fallback_order: list[str]
    versions: list[ModelInfo]


class CandlesData(Body):
    pair: str
    timeframe: str
    inserted: int = Field(description="candles not stored before")
    duplicates: int = Field(description="candles already stored with the same prices")
    conflicts: int = Field(description="candles stored before with other prices (the first stored wins)")
    bars_scored: int = Field(
        description='bars these candles close that every loaded version was scored on now (README "Outcomes")'
    )


class ReloadData(Body):
    """What serves after an admin reload of the model store (POST /reversal/models/reload)."""

    loaded: list[str] = Field(description="configured versions that serve now, in fallback order")
    added: list[str] = Field(description="versions that serve now and did not before the call")
    failed: dict[str, str] = Field(description="version -> why it does not serve")


class SwitchData(Body):
    active_version: str | None
    previous_version: str | None


class ExperimentData(Body):
    experiment_id: str
    name: str
    description: str
    variant_a: str
    variant_b: str
    traffic_split: float
    salt: str | None = Field(
        default=None,
        description="the secret of the user -> variant assignment: only in answers to admin callers "
        "(the admin routes, and GET /reversal/experiments with the admin token)",
    )
    status: Literal["created", "active", "stopped"]
    active: bool
    created_at: str
    activated_at: str | None
    stopped_at: str | None


class ExperimentList(Body):
    experiments: list[ExperimentData]
    active_experiment_id: str | None


class OutcomeStats(Body):
    """Pips clients posted per prediction (the seed's outcomes; a hit is pips > 0)."""

    count: int
    hit_rate: float | None
    mean_pips: float | None
    total_pips: float


class MarketOutcomeStats(OutcomeStats):
    """The version's trade on each long/short prediction's bar, resolved from later candles (a hit: take profit)."""

    source: Literal["market"]


class VariantMetrics(Body):
    count: int
    signals: dict[Signal, int]
    avg_confidence: float | None
    outcomes: OutcomeStats
    market_outcomes: MarketOutcomeStats


class VariantData(Body):
    model_version: str
    traffic_split: float
    metrics: VariantMetrics


class WelchTest(Body):
    """Welch t-test of mean pips, B - A (fixed horizon)."""

    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    t: float | None
    df: float | None
    p_value: float | None
    ci95: list[float] | None
    note: str | None


class ProportionTest(Body):
    """Two-proportion z-test of hit rates, B - A (fixed horizon)."""

    n_a: int
    n_b: int
    rate_a: float | None
    rate_b: float | None
    diff: float | None
    z: float | None
    p_value: float | None
    ci95: list[float] | None
    note: str | None


class Comparison(Body):
    pips: WelchTest
    hit_rate: ProportionTest
    min_samples: int
    alpha: float
    winner: Variant | None
    reason: str
    method: Literal["fixed_horizon"] = Field(
        default="fixed_horizon", description="valid read once at a size fixed in advance (docs/statistics.md)"
    )


class ExperimentMetricsData(Body):
    experiment_id: str
    name: str
    description: str
    status: Literal["created", "active", "stopped"]
    active: bool
    variants: dict[Variant, VariantData]
    comparison: Comparison
    market_comparison: Comparison = Field(description="the same tests over market outcomes (fixed horizon)")
    srm: SrmCheck | None = Field(default=None, description="sample-ratio mismatch of the user split")
    paired: PairedComparison | None = Field(
        default=None, description="variant B's version against A's on the same bars (always-valid; outcome loop on)"
    )


class OutcomeData(Body):
    prediction_id: str
    experiment_id: str
    variant: Variant
    model_version: str
    pips: float
    hit: bool
    recorded_at: str
    created: bool = Field(description="false when the same outcome was already recorded")
    corrected_at: str | None = Field(default=None, description="set when an admin corrected the outcome")


class UserDataDeleted(Body):
    user_id: str
    deleted: int = Field(description="stored predictions (with their outcomes) deleted")


class SrmCheck(Body):
    """Sample-ratio mismatch: users per variant against the traffic split (anytime-valid e-value test)."""

    users: dict[Variant, int]
    chi2: float | None = Field(description="Pearson's statistic, descriptive only")
    p_value: float | None = Field(description="anytime-valid p-value min(1, 1/e_value); flagged when <= threshold")
    e_value: float | None = Field(description="null when infinite or beyond the float range")
    flagged: bool = Field(description="the test flagged at some read since the last reset: a flag stands until reset")
    threshold: float
    total: int = Field(description="users the test counted: beyond the last reset's baseline, if any")
    rule: str
    flagged_at: str | None = Field(default=None, description="when the standing flag was first raised")
    flag: SrmFlag | None = Field(default=None, description="the check at the read that first flagged")
    reset_at: str | None = Field(default=None, description="the last admin reset (POST .../srm/reset)")
    baseline: dict[Variant, int] | None = Field(default=None, description="users per variant at the last reset")


class SrmFlag(Body):
    """The sample-ratio-mismatch check at the read that first flagged (kept until an admin reset)."""

    users: dict[Variant, int]
    counted: dict[Variant, int]
    p_value: float | None
    e_value: float | None
    threshold: float
    total: int
    rule: str


ExperimentMetricsData.model_rebuild()
