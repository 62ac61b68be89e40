"""CLI: python -m training --version v3.1 [--csv PATH] [--out DIR] [--import]."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from aifx.candles import CandleDataError
from aifx.versions import KNOWN_VERSIONS, default_spec
from training.candles_csv import load_candles_csv
from training.search import CHOICE_FILE, chosen_size
from training.train import data_info, train_version

DEFAULT_CSV = Path(__file__).resolve().parent.parent / "data" / "FOREX_EURUSD_1H_ASK.csv"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, train, optionally import into the BentoML store."""
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    ap.add_argument("--version", required=True, choices=KNOWN_VERSIONS)
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="OHLC(V) CSV (default: bundled EUR/USD 1h)")
    ap.add_argument("--out", type=Path, default=None, help="artifact folder (default: artifacts/<version>)")
    ap.add_argument("--folds", type=int, default=5, help="walk-forward folds (0 skips evaluation)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--import", dest="do_import", action="store_true", help="import into the BentoML store")
    args = ap.parse_args(argv)
    try:
        candles = load_candles_csv(args.csv)
    except CandleDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or Path("artifacts") / args.version
    spec = default_spec(args.version, args.window)
    if spec.architecture == "transformer" and not spec.model_size:
        spec = replace(spec, model_size=chosen_size())  # `make search`'s committed choice
        print(f"[{spec.version}] transformer size {spec.model_size} (from {CHOICE_FILE.name} if present)")
    train_version(candles, spec, out, data=data_info(args.csv, candles), folds=args.folds,
                  epochs=args.epochs, seed=args.seed)  # fmt: skip
    if args.do_import:
        from model_store_import import import_artifacts

        for stage, tag in import_artifacts(out).items():
            print(f"imported stage {stage}: {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
