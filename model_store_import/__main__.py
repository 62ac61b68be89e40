"""CLI: import artifacts, import seed folders, or ensure the default versions are in the store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bentoml

from aifx.versions import LITE_FILE, model_name
from model_store_import.importer import import_artifacts
from model_store_import.seed_format import import_seed_folder


def in_store(version: str) -> bool:
    """Whether Stage 1 of this version is in the current BentoML store, in the current layout."""
    try:
        stored = bentoml.models.get(model_name(version, 1))
    except bentoml.exceptions.NotFound:
        return False
    return Path(stored.path, LITE_FILE).is_file()  # stored before the TFLite conversion: import again


def ensure(versions: list[str], artifacts: Path) -> None:
    """Train (if no artifacts) and import each version the store lacks."""
    from training.__main__ import main as train_main

    for version in versions:
        if in_store(version):
            print(f"{version}: already in the store ({bentoml.models.get(model_name(version, 1)).tag})")
            continue
        folder = artifacts / version
        if not (folder / "metadata.json").is_file():
            train_main(["--version", version, "--out", str(folder)])
        for stage, tag in import_artifacts(folder).items():
            print(f"{version}: imported stage {stage} as {tag}")


def main(argv: list[str] | None = None) -> int:
    """Dispatch the sub-commands."""
    ap = argparse.ArgumentParser(prog="python -m model_store_import")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_art = sub.add_parser("artifacts", help="import a training output folder")
    p_art.add_argument("folder", type=Path)
    p_seed = sub.add_parser("seed", help="import a seed-format folder (trusted files only: it unpickles)")
    p_seed.add_argument("folder", type=Path)
    p_seed.add_argument("--version", required=True)
    p_seed.add_argument("--prefix", default="", help="file prefix, e.g. profitable_ for the seed's v3.1")
    p_ens = sub.add_parser("ensure", help="train and import the versions the store lacks")
    p_ens.add_argument("versions", nargs="+")
    p_ens.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    args = ap.parse_args(argv)
    if args.cmd == "artifacts":
        tags = import_artifacts(args.folder)
    elif args.cmd == "seed":
        tags = import_seed_folder(args.folder, args.version, args.prefix)
    else:
        ensure(args.versions, args.artifacts)
        return 0
    for stage, tag in tags.items():
        print(f"imported stage {stage}: {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
