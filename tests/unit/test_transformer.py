"""v3.2's Transformer: its spec, size, determinism, the nested search, and LiteRT parity with Keras."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aifx.features import FEATURE_SETS, sample_windows
from aifx.versions import VersionSpec, default_spec
from training.candles_csv import load_candles_csv
from training.model import TRANSFORMER_SIZE, build_model, fit, predict_proba
from training.search import GRID, Row, chosen_size, inner_folds, one_se_choice, search_region

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data" / "FOREX_EURUSD_1H_ASK.csv"


def test_v32_is_a_transformer_on_v31_labels():
    v31, v32 = default_spec("v3.1"), default_spec("v3.2")
    assert v32.architecture == "transformer" and v31.architecture == "conv1d"
    assert v32.label_params == v31.label_params
    assert set(v31.features) < set(v32.features) and v32.features == FEATURE_SETS["v3.2"]
    assert v32.min_candles == v31.min_candles  # a request sized for v3.1 serves v3.2 too


def test_architecture_and_size_travel_in_metadata():
    spec = replace(default_spec("v3.2"), model_size={"d_model": 8, "heads": 2, "blocks": 1, "ff": 16})
    back = VersionSpec.from_metadata(json.loads(json.dumps(spec.to_metadata())))
    assert back == spec
    old = {k: v for k, v in default_spec("v3.1").to_metadata().items() if k not in ("architecture", "model_size")}
    assert VersionSpec.from_metadata(old).architecture == "conv1d"


@pytest.mark.parametrize("size", [TRANSFORMER_SIZE, *GRID])
def test_sizes_stay_small(size):
    params = build_model(20, len(FEATURE_SETS["v3.2"]), 0, "transformer", size).count_params()
    assert 1_000 <= params <= 50_000


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown architecture 'lstm'"):
        build_model(20, 4, 0, "lstm")


def test_transformer_fit_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 20, 6))
    y = (x[:, -1, 0] > 0).astype(float)
    size = {"d_model": 8, "heads": 2, "blocks": 2, "ff": 16}
    a, b, c = (predict_proba(fit(x, y, s, 2, architecture="transformer", size=size), x) for s in (3, 3, 4))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_search_never_sees_a_test_block():
    bars, horizon = np.arange(100, 1300), 12
    region = search_region(bars, 5, horizon)
    first_test_bar = bars[np.linspace(0, len(bars), 7).astype(int)[1]]
    assert len(region) > 0 and (bars[region] + horizon < first_test_bar).all()
    folds = inner_folds(bars, region, 3, horizon)
    assert len(folds) == 3
    for f in folds:
        assert set(f.train) <= set(region) and set(f.test) <= set(region)
        assert (bars[f.train] + horizon < bars[f.test].min()).all()  # the label horizon is purged


def test_one_standard_error_rule_prefers_the_smaller_size():
    big = Row({"d_model": 32}, 5000, [0.53, 0.55, 0.57], 1.0)
    small_close = Row({"d_model": 16}, 2000, [0.54, 0.54, 0.55], 1.0)
    smallest_far = Row({"d_model": 8}, 1000, [0.50, 0.52, 0.54], 1.0)
    assert smallest_far.mean < big.mean - big.se <= small_close.mean
    assert one_se_choice([big, small_close, smallest_far]) is small_close
    assert one_se_choice([big, smallest_far]) is big


def test_the_choice_file_is_read(tmp_path):
    path = tmp_path / "choice.json"
    assert chosen_size(path) == TRANSFORMER_SIZE  # no search run: the default size
    path.write_text(json.dumps({"size": GRID[-1], "table": []}))
    assert chosen_size(path) == GRID[-1]
    assert chosen_size() in [TRANSFORMER_SIZE, *GRID]  # the committed choice, if any, is a searched size


def test_litert_conversion_matches_keras_on_real_windows(tmp_path):
    import keras

    from aifx.versions import Scaler
    from model_store_import.lite import keras_to_tflite
    from runners.inference import LiteModel

    spec = replace(default_spec("v3.2"), model_size=chosen_size())
    candles = load_candles_csv(DATA).slice(0, 1500)
    x, _ = sample_windows(candles, spec.features, spec.window)
    scaler = Scaler.fit(spec.features, x.reshape(-1, x.shape[-1]))
    y = (x[:, -1, 0] > 0).astype(float)  # any labels: only the numbers of the conversion matter
    model = fit(scaler.transform(x), y, 0, 1, architecture="transformer", size=spec.model_size)
    model.save(tmp_path / "stage1.keras")
    rows = x[np.linspace(0, len(x) - 1, 200).astype(int)]
    loaded = keras.models.load_model(tmp_path / "stage1.keras", compile=False)  # no custom objects to register
    want = loaded(scaler.transform(rows).astype(np.float32)).numpy().reshape(-1)
    lite = LiteModel(keras_to_tflite(tmp_path / "stage1.keras"), scaler, spec)
    batched = np.concatenate([lite(rows[:100]), lite(rows[100:])])  # batch 100
    single = np.array([lite(rows[i : i + 1])[0] for i in range(len(rows))])  # batch 1
    assert want.std() > 1e-4  # the windows give different answers, so equality means something
    assert np.abs(batched - want).max() <= 1e-5
    assert np.abs(single - want).max() <= 1e-5
