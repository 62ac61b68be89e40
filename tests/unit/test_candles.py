"""CSV loader: the three layouts parse alike, each bad file gets its own message."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aifx.candles import CandleDataError, median
from training.candles_csv import load_candles_csv

pytestmark = pytest.mark.unit

DATA = Path(__file__).resolve().parents[2] / "data" / "FOREX_EURUSD_1H_ASK.csv"
GOOD_ROWS = [
    ("2017-01-02 00:00", 1.0528, 1.0529, 1.0526, 1.0528, 100),
    ("2017-01-02 01:00", 1.0528, 1.0530, 1.0520, 1.0524, 120),
    ("2017-01-02 02:00", 1.0524, 1.0531, 1.0521, 1.0530, 90),
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "candles.csv"
    path.write_text(text)
    return path


def iso_csv(rows=GOOD_ROWS, header="timestamp,open,high,low,close,volume") -> str:
    return header + "\n" + "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"


def test_default_data_file_loads():
    c = load_candles_csv(DATA)
    assert len(c) == 6225
    assert str(c.timestamp[0]).startswith("2017-01-01T22:00")
    assert c.volume is not None and c.high.min() > 1.0


def test_three_layouts_give_the_same_candles(tmp_path):
    iso = load_candles_csv(write(tmp_path, iso_csv()))
    gym_rows = [(f"02.01.2017 {r[0][11:13]}:00:00.000", *r[1:]) for r in GOOD_ROWS]
    gym = load_candles_csv(write(tmp_path, iso_csv(gym_rows, "Time,Open,High,Low,Close,Volume")))
    mt4_text = "\n".join(f"2017.01.02,{r[0][11:]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]}" for r in GOOD_ROWS)
    mt4 = load_candles_csv(write(tmp_path, mt4_text + "\n"))
    for other in (gym, mt4):
        assert np.array_equal(other.timestamp, iso.timestamp)
        assert np.array_equal(other.close, iso.close)
        assert np.array_equal(other.volume, iso.volume)


def test_iso_with_timezone_is_converted_to_utc(tmp_path):
    rows = [("2017-01-02T02:00:00+02:00", *GOOD_ROWS[0][1:])]
    c = load_candles_csv(write(tmp_path, iso_csv(rows)))
    assert str(c.timestamp[0]).startswith("2017-01-02T00:00")


def test_volume_is_optional(tmp_path):
    rows = [r[:5] for r in GOOD_ROWS]
    c = load_candles_csv(write(tmp_path, iso_csv(rows, "date,open,high,low,close")))
    assert c.volume is None and len(c) == 3


def replace(row_index: int, column: int, value) -> list:
    rows = [list(r) for r in GOOD_ROWS]
    rows[row_index][column] = value
    return rows


BAD_FILES = {
    "missing column": (
        iso_csv([r[:4] for r in GOOD_ROWS], "timestamp,open,high,low"),
        "missing column(s) close",
    ),
    "no time column": (iso_csv([r[1:] for r in GOOD_ROWS], "open,high,low,close,volume"), "timestamp"),
    "unparsable timestamp": (iso_csv(replace(1, 0, "yesterday")), "row 1: unparsable timestamp 'yesterday'"),
    "unsorted": (iso_csv([GOOD_ROWS[0], GOOD_ROWS[2], GOOD_ROWS[1]]), "row 2: timestamps are not sorted"),
    "duplicate": (iso_csv([GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[1]]), "row 2: duplicate timestamp"),
    "NaN price": (iso_csv(replace(2, 4, "nan")), "row 2: close is NaN or infinite"),
    "empty cell": (iso_csv(replace(1, 2, "")), "row 1: high is NaN or infinite"),
    "text price": (iso_csv(replace(1, 3, "abc")), "row 1: low is not a number: 'abc'"),
    "non-positive": (iso_csv(replace(0, 1, -1.05)), "row 0: open must be positive"),
    "zero price": (iso_csv(replace(1, 4, 0)), "row 1: close must be positive"),
    "high below low": (iso_csv(replace(1, 2, 1.0510)), "row 1: high 1.051 is below low 1.052"),
    "close outside range": (iso_csv(replace(2, 4, 1.06)), "row 2: close 1.06 is outside the bar's range"),
    "negative volume": (iso_csv(replace(0, 5, -3)), "row 0: volume must be a finite number >= 0"),
    "header only": ("timestamp,open,high,low,close\n", "no data rows"),
    "empty file": ("", "file is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_gets_its_own_clear_error(tmp_path, case):
    text, message = BAD_FILES[case]
    with pytest.raises(CandleDataError) as err:
        load_candles_csv(write(tmp_path, text))
    assert message in str(err.value)
    assert "candles.csv" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(CandleDataError, match="no such file"):
        load_candles_csv(tmp_path / "nope.csv")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, max_size=300))
def test_median_is_numpys_bit_for_bit(values):
    x = np.asarray(values)
    assert median(x) == float(np.median(x))
