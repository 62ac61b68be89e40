"""Turn candles into labelled samples for one version."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aifx.candles import Candles
from aifx.features import sample_windows
from aifx.labels import BarrierParams, StageLabels, SwingParams, barrier_labels, swing_labels
from aifx.versions import VersionSpec


@dataclass(frozen=True)
class Dataset:
    """Unscaled samples (n, window, features), their bar indices and labels."""

    x: np.ndarray
    bars: np.ndarray
    y1: np.ndarray
    y2: np.ndarray  # NaN where Stage 2 has no label
    horizon: int


def label_params(spec: VersionSpec) -> SwingParams | BarrierParams:
    """The label parameters a version records in its metadata."""
    params = {k: v for k, v in spec.label_params.items() if k != "scheme"}
    scheme = spec.label_params.get("scheme")
    if scheme == "swing_point":
        return SwingParams(**params)  # type: ignore[arg-type]
    if scheme == "triple_barrier":
        return BarrierParams(**params)  # type: ignore[arg-type]
    raise ValueError(f"{spec.version}: unknown label scheme {scheme!r}")


def make_labels(candles: Candles, params: SwingParams | BarrierParams) -> StageLabels:
    """Labels of every bar under the version's scheme."""
    if isinstance(params, SwingParams):
        return swing_labels(candles.high, candles.low, params)
    return barrier_labels(candles.high, candles.low, candles.close, params)


def build_dataset(candles: Candles, spec: VersionSpec) -> Dataset:
    """Samples for every bar with full feature history and a defined label."""
    params = label_params(spec)
    labels = make_labels(candles, params)
    x, bars = sample_windows(candles, spec.features, spec.window)
    y1, y2 = labels.stage1[bars], labels.stage2[bars]
    keep = ~np.isnan(y1)
    return Dataset(x[keep], bars[keep], y1[keep], y2[keep], params.horizon)
