"""A small real training run (v3.0 on the bundled EUR/USD candles, 3 folds, 2 epochs): calibration is chosen
on calibration blocks only, kept only where it lowers their pooled Brier score, and where kept it also lowers
the Brier score on the test folds; the served threshold and maps are the ones the walk-forward chose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aifx.calibration import Calibration

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data" / "FOREX_EURUSD_1H_ASK.csv"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    from aifx.versions import default_spec
    from training.candles_csv import load_candles_csv
    from training.train import data_info, train_version

    out = tmp_path_factory.mktemp("calibration-run") / "v3.0"
    candles = load_candles_csv(DATA)
    meta = train_version(
        candles, default_spec("v3.0"), out, data=data_info(DATA, candles), folds=3, epochs=2, log=lambda _: None
    )
    return out, json.loads(json.dumps(meta))


def test_stages_calibrated_on_validation_blocks_have_a_lower_test_brier(run) -> None:
    _, meta = run
    kept = []
    for stage in ("stage1", "stage2"):
        c = meta["metrics"][stage]["calibration"]
        v = c["validation"]
        assert c["kept"] == (v["brier_after"] < v["brier_before"])  # decided on the calibration blocks alone
        assert meta["calibration"][stage]["kept"] == c["kept"]
        assert meta["calibration"][stage]["brier_validation"] == {
            "before": v["brier_before"],
            "after": v["brier_after"],
        }
        if c["kept"]:
            kept.append(stage)
            assert c["test"]["after"]["brier"] < c["test"]["before"]["brier"], (stage, c["test"])
    # balanced class weights at a base rate of ~0.12 push raw Stage 1 outputs far above the outcome rate:
    # a run where no stage keeps its map would leave this test checking nothing
    assert kept, meta["calibration"]


def test_the_artifacts_carry_the_chosen_maps_and_threshold(run) -> None:
    out, meta = run
    for stage in (1, 2):
        stored = Calibration.from_json(json.loads((out / f"stage{stage}.calibration.json").read_text()))
        block = meta["calibration"][f"stage{stage}"]
        assert stored.method == block["method"]
        if not block["kept"]:
            assert stored.is_identity and block["calibration_rows"] == 0
    t = meta["metrics"]["stage1"]["threshold"]
    assert meta["threshold"] == t["value"] and 0 < t["value"] < 1
    assert [f["threshold"] for f in meta["metrics"]["stage1"]["folds"]] == t["per_fold"]


def test_stage1_fires_sensibly_at_a_low_base_rate(run) -> None:
    _, meta = run
    s1 = meta["metrics"]["stage1"]
    base, fires = s1["calibration"]["test"]["base_rate"], s1["threshold"]["firing_rate_test"]
    assert base < 0.2  # v3.0's swing points are rare
    overall = s1["overall"]["model"]
    assert overall["predicted_positive_rate"] == pytest.approx(fires, abs=1e-6)
    assert 0 < fires < 0.5 and overall["tp"] > 0, (base, fires)


def test_served_test_scores_are_the_calibrated_ones_where_kept(run) -> None:
    out, meta = run
    scores = json.loads((out / "evaluation_scores.json").read_text())
    for stage in ("stage1", "stage2"):
        s = scores[stage]
        c = meta["metrics"][stage]["calibration"]
        served, raw = np.asarray(s["model"]), np.asarray(s["raw"])
        assert len(served) == len(raw) == len(s["y"])
        y = np.asarray(s["y"], dtype=float)
        brier = float(np.mean((served - y) ** 2))
        want = c["test"]["after" if c["kept"] else "before"]["brier"]
        assert brier == pytest.approx(want, abs=1e-4)  # the scores file rounds to 5 decimals


def test_the_drift_reference_bins_out_of_sample_stage1_and_carries_thresholds(run) -> None:
    """drift.json (issue 26): the Stage 1 bins are those of the walk-forward test folds' served probabilities
    (out-of-sample), not the final network's outputs on its own training rows, and alert thresholds are
    calibrated for every served window size."""
    from aifx.drift import CALIBRATION_SIZES, STAGE1, Reference, quantile_bins

    out, meta = run
    ref = Reference.from_json(json.loads((out / "drift.json").read_text()))
    assert ref.stage1_source.startswith("out-of-sample: the 3 walk-forward test folds")
    scores = json.loads((out / "evaluation_scores.json").read_text())["stage1"]["model"]
    expected = quantile_bins(np.asarray(scores, dtype=np.float64))
    assert np.allclose(ref.bins[STAGE1].edges, expected.edges) and np.allclose(ref.bins[STAGE1].expected,
                                                                                 expected.expected)  # fmt: skip
    assert ref.rows == meta["training"]["samples"] > len(scores)  # features: every training row
    assert ref.thresholds is not None and ref.thresholds.sizes == CALIBRATION_SIZES
    assert all(min(v) > 0 for v in ref.thresholds.values.values())
