"""Shared fixtures: a temporary BentoML home with small, quickly trained v3.0 / v3.1 / v3.2 models.

The store holds v3.1, v3.0 and v3.2 (a tiny Transformer; all three both stages) and `v2.9` (Stage 1
only, threshold 0, so it always fires and exercises the no-Stage-2 direction rule). Integration
servers reuse the same BENTOML_HOME through the environment.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# prometheus_client picks its value class at import: give in-process tests a multiprocess dir too.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="aifx-prom-"))
# Input drift gauges recomputed twice a second (default 10 s) so tests read them without waiting.
os.environ.setdefault("AIFX_DRIFT_EVERY_SECONDS", "0.5")
# The outcome loop logs only recent bars (not older than the outcome expiry): the bundled year of 2017
# candles is replayed shifted to end this week (the `candles` fixture), so all of it must count as recent.
os.environ.setdefault("AIFX_OUTCOME_EXPIRY_HOURS", str(24 * 400))
WEEK = np.timedelta64(7 * 24 * 3600, "s")

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = ROOT / "data" / "FOREX_EURUSD_1H_ASK.csv"
TEST_VERSIONS = "v3.1,v3.0,v2.9,v3.2"  # v3.1 first: the default version; v3.2 last: fallbacks stay as they were
NO_STAGE2_VERSION = "v2.9"
TRAIN_BARS = 3000  # train on the first bars only; tests predict anywhere in the file
DOMAIN = {"pairs": ["EUR/USD"], "timeframes": ["1h"]}  # the training data's (v2.9 records none: its domain is unknown)
TINY_TRANSFORMER = {"d_model": 8, "heads": 2, "blocks": 1, "ff": 16}


@dataclass(frozen=True)
class ModelStore:
    """The session's BentoML home and what is in it."""

    home: Path
    versions: str
    env: dict[str, str]


def _point_bentoml_at(home: Path) -> None:
    """Set BENTOML_HOME and drop BentoMLContainer's cached paths so the new home is used."""
    os.environ["BENTOML_HOME"] = str(home)
    from bentoml._internal.configuration.containers import BentoMLContainer

    for provider in (
        BentoMLContainer.bentoml_home,
        BentoMLContainer.bento_store_dir,
        BentoMLContainer.model_store_dir,
        BentoMLContainer.env_store_dir,
        BentoMLContainer.tmp_bento_store_dir,
        BentoMLContainer.bento_store,
        BentoMLContainer.model_store,
        BentoMLContainer.tmp_bento_store,
        BentoMLContainer.result_store_file,
    ):
        provider.reset()


def train_versions(workdir: Path) -> None:
    """Train tiny models for v3.0, v3.1, v3.2 (both stages) and v2.9 (Stage 1 only) and import them."""
    from aifx.calibration import Calibration
    from aifx.drift import build_reference
    from aifx.drift_calibration import calibrate
    from aifx.features import sample_windows
    from aifx.labels import barrier_labels, swing_labels
    from aifx.versions import Scaler, VersionSpec, default_spec
    from model_store_import.importer import write_version
    from training.candles_csv import load_candles_csv
    from training.model import fit, predict_proba

    # Fixed, mild maps (Platt, isotonic) so the parity test goes through calibration: a map fitted to a one-epoch
    # model could move every window below the 0.5 threshold and leave the fired branch untested. v2.9 has none.
    maps = {
        1: Calibration("platt", a=1.3, b=0.1),
        2: Calibration("isotonic", x=(0.0, 0.3, 0.5, 0.7, 1.0), y=(0.05, 0.2, 0.45, 0.7, 0.9)),
    }
    candles = load_candles_csv(DATA_FILE).slice(0, TRAIN_BARS)
    for version in ("v3.0", "v3.1", "v3.2"):
        spec = default_spec(version)
        if spec.architecture == "transformer":
            spec = replace(spec, model_size=TINY_TRANSFORMER)
        x, ends = sample_windows(candles, spec.features, spec.window)
        if version == "v3.0":
            labels = swing_labels(candles.high, candles.low)
        else:
            labels = barrier_labels(candles.high, candles.low, candles.close)
        y1, y2 = labels.stage1[ends], labels.stage2[ends]
        scaler = Scaler.fit(spec.features, x.reshape(-1, x.shape[-1]))
        xs = scaler.transform(x)
        ok1 = ~np.isnan(y1)
        ok2 = ~np.isnan(y2)
        files = {}
        m1 = fit(xs[ok1], y1[ok1], seed=1, epochs=1, architecture=spec.architecture, size=spec.model_size)
        files[1] = workdir / f"{version}-stage1.keras"
        m1.save(files[1])
        p1 = maps[1](predict_proba(m1, xs[ok1]))  # as served (in-sample: a fixture, not a training run)
        reference = build_reference(spec.features, x[ok1][:, -1, :], p1)
        reference = calibrate(reference, np.column_stack([x[ok1][:, -1, :], p1]))  # alert thresholds, as at import
        m2 = fit(xs[ok2], y2[ok2], seed=2, epochs=1, architecture=spec.architecture, size=spec.model_size)
        files[2] = workdir / f"{version}-stage2.keras"
        m2.save(files[2])
        overall = {"model": {"base_rate": float(np.nanmean(y1))}}  # the training CLI's layout
        metrics = {"stage1": {"overall": overall, "split": "none (test fixture)"}}
        extra = {"metrics": metrics, "source": "tests/conftest.py", "domain": DOMAIN}
        write_version(spec, scaler, files, extra, reference, maps)
        if version == "v3.1":
            lite = VersionSpec(NO_STAGE2_VERSION, spec.features, spec.window, 0.0, spec.label_params, "Lite")
            write_version(lite, scaler, {1: files[1]}, {"source": "tests/conftest.py (no stage 2)"}, reference)


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A temporary BENTOML_HOME holding the small test models (built once per session)."""
    home = tmp_path_factory.mktemp("bentoml-home")
    _point_bentoml_at(home)
    work = tmp_path_factory.mktemp("artifacts")
    train_versions(work)
    env = {
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "AIFX_VERSIONS": TEST_VERSIONS,
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    return ModelStore(home, TEST_VERSIONS, env)


@pytest.fixture(scope="session")
def candles():
    """The default EUR/USD 1h data set, moved by whole weeks to end in the last week (same weekdays and hours,
    so the same features: the outcome loop logs only bars near now)."""
    from training.candles_csv import load_candles_csv

    c = load_candles_csv(DATA_FILE)
    return replace(c, timestamp=c.timestamp + recent_shift(c.timestamp[-1]))


def recent_shift(last: np.datetime64) -> np.timedelta64:
    """Whole weeks that move `last` into the week before now."""
    now = np.datetime64("now", "s")
    weeks = (now - last.astype("datetime64[s]")) // WEEK
    return (weeks * WEEK).astype("timedelta64[ns]")


@pytest.fixture(scope="session")
def candle_json(candles):
    """rows(stop, n): the n candles ending before bar `stop` as the API's JSON objects."""

    def rows(stop: int, n: int) -> list[dict[str, object]]:
        return _candle_json(candles, stop - n, stop)

    return rows


def _candle_json(c, start: int, stop: int) -> list[dict[str, object]]:
    """Candles[start:stop] as the API's JSON objects."""
    ts = np.datetime_as_string(c.timestamp[start:stop], unit="s")
    return [
        {
            "timestamp": f"{t}Z",
            "open": float(c.open[i]),
            "high": float(c.high[i]),
            "low": float(c.low[i]),
            "close": float(c.close[i]),
        }
        for t, i in zip(ts, range(start, stop), strict=True)
    ]
