"""Response bodies of deciding between versions (issues 13 and 26): the paired comparison, its windowed and
anchored views, promotion policies and their audit trail. aifx.http.responses holds the rest."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from aifx.http.response_base import Body

ComparisonState = Literal[
    "collecting", "b_better", "b_better_below_min_effect", "a_better", "no_meaningful_difference", "guardrail_breach"
]


class ExcludedBars(Body):
    """Bars left out of every figure: ATR under min_atr_pips (or unusable), R not finite or beyond max_abs_r."""

    bars: int
    atr_invalid: int
    atr_below_min: int
    r_not_finite: int
    r_beyond_max: int
    min_atr_pips: float
    max_abs_r: float


class FixedHorizonTests(Body):
    """Naive tests of the paired R series, valid only when read once at a size set in advance."""

    welch_t: float | None
    welch_df: float | None
    welch_p: float | None
    paired_t: float | None
    paired_p: float | None
    nw_z: float | None
    nw_p: float | None
    note: str


class ConfidenceSequence(Body):
    """Always-valid interval of the mean R difference per bar (b - a), from block means."""

    low: float | None
    high: float | None
    blocks: int
    block_bars: int
    alpha: float
    expected_bars: int
    min_blocks: int


class BothSignalled(Body):
    both_signalled: int = Field(description="bars where both versions traded (descriptive hit rates)")
    hit_rate_a: float | None
    hit_rate_b: float | None


class Stage1Scores(Body):
    n: int
    base_rate: float | None
    brier: float | None
    pr_auc: float | None


class PairedStage1(Body):
    a: Stage1Scores
    b: Stage1Scores


class PairedDrawdown(Body):
    a: float
    b: float


class ComparisonFilters(Body):
    pair: str | None
    timeframe: str | None
    since: str | None = Field(description="bars at or after this bar time")
    logged_since: str | None = Field(description="bars first logged at or after this time (probation)")
    window_days: int = Field(description="bars logged within this many days are read (the retention period)")


class AnchoredInterval(Body):
    low: float | None
    high: float | None


class AnchoredComparison(Body):
    """The anchored sequence the promoter decides on (issue 26): every bar since a fixed start, read once per block."""

    started_at: str = Field(description="the anchor's start: the policy armed, a switch or an admin reset")
    alpha: float = Field(description="this anchor's share: alpha / armed challengers x 6 / (pi^2 (index + 1)^2)")
    min_effect: float
    blocks: int
    block_bars: int
    bars: int
    series: int
    excluded: int
    late: int = Field(description="bars older than their series' last processed bar: skipped")
    mean_diff: float | None
    interval: AnchoredInterval
    drawdown_r: PairedDrawdown
    decision: Literal["b_better", "a_better", "no_meaningful_difference"] | None = Field(
        description="set once and standing until an admin reset (POST /reversal/promotion/{b}/reset)"
    )
    decided_blocks: int | None
    decided_bar: str | None
    decided_at: str | None
    index: int = Field(description="j: this anchor's place among the challenger's anchors (alpha spending)")


class AnchorReset(Body):
    a: str
    b: str
    anchored: AnchoredComparison | None


class PairedComparison(Body):
    """Version b against version a on the bars both were scored on (README "Deciding between versions")."""

    a: str
    b: str
    filters: ComparisonFilters
    series: int = Field(description="(pair, timeframe) series among the bars; blocks span 2 x 12 bars of each")
    n_bars: int
    excluded: ExcludedBars
    mean_r_a: float | None
    mean_r_b: float | None
    mean_diff: float | None = Field(description="mean of r_b - r_a per bar, in R (pips after cost / ATR in pips)")
    nw_se: float | None = Field(description="Newey-West standard error of mean_diff (lag nw_lag)")
    nw_lag: int
    fixed_horizon: FixedHorizonTests
    confidence_sequence: ConfidenceSequence
    hit_rates: BothSignalled
    stage1: PairedStage1
    max_drawdown_r: PairedDrawdown
    min_effect: float
    state: ComparisonState
    guardrails: list[str] = Field(
        description="guardrails version b breaks now (state guardrail_breach when any): its drawdown beyond a's "
        "here; the promoter also checks its stage error rate"
    )
    view: Literal["windowed"] = Field(description="the figures above: bars logged within the window, for reading")
    anchored: AnchoredComparison | None = Field(
        default=None, description="the anchored sequence the promoter decides on (unfiltered requests; null: none)"
    )


class PromotionPolicy(Body):
    challenger: str
    mode: Literal["off", "recommend", "auto"]
    min_effect_r: float
    max_drawdown_r: float
    probation_bars: int
    updated_at: str
    probation_from_version: str | None = Field(default=None, description="the version an automatic switch replaced")
    probation_started_at: str | None = None
    probation_start_bar: str | None = None


class PolicyList(Body):
    policies: list[PromotionPolicy]


class Decision(Body):
    """One audit row: a recommendation, switch, rollback or confirmation, with the figures behind it."""

    id: int
    at: str
    action: Literal["recommend", "switch", "rollback", "confirm"]
    challenger: str
    incumbent: str
    mode: Literal["off", "recommend", "auto"]
    state: str
    reason: str
    figures: dict[str, Any]


class DecisionList(Body):
    decisions: list[Decision]
