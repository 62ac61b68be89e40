"""Generate the sync client (client.py) from the async one (aio.py) with unasync; --check only compares."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import unasync

PACKAGE = Path(__file__).resolve().parent
SOURCE, TARGET = PACKAGE / "aio.py", PACKAGE / "client.py"
COMMAND = "python -m aifx_client._generate"
HEADER = f"# Generated from aifx_client/aio.py by `{COMMAND}`; do not edit.\n"

# Identifiers, matched as whole tokens (unasync already maps __aenter__/__aexit__).
TOKENS = {
    "AsyncAIFXClient": "AIFXClient",
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "aclose": "close",
    "aread": "read",
    "aiter_lines": "iter_lines",
    "_AsyncPlumbing": "_Plumbing",
    "asyncio": "time",  # import asyncio / asyncio.sleep -> import time / time.sleep
}
# unasync leaves the text inside strings alone, so the docstrings that name the flavour are swapped here.
DOCSTRINGS = {
    "AsyncAIFXClient: the asyncio client (httpx.AsyncClient); client.py is generated from this file by unasync.": (
        "AIFXClient: the synchronous client (httpx.Client)."
    ),
    "Asyncio client of the AIFX Reversal Engine;": "Synchronous client of the AIFX Reversal Engine;",
}


def generate(target: Path = TARGET) -> None:
    """Write the sync client generated from aio.py to target, formatted like the rest of the repo."""
    source = SOURCE.read_text(encoding="utf-8")
    for old, new in DOCSTRINGS.items():
        if source.count(old) != 1:
            raise SystemExit(f"{SOURCE.name}: expected one {old!r}; update DOCSTRINGS in {Path(__file__).name}")
        source = source.replace(old, new)
    with tempfile.TemporaryDirectory() as tmp:
        async_copy = Path(tmp, SOURCE.name)
        async_copy.write_text(source, encoding="utf-8")
        unasync.unasync_files([str(async_copy)], [unasync.Rule(SOURCE.name, TARGET.name, TOKENS)])
        text = HEADER + Path(tmp, TARGET.name).read_text(encoding="utf-8")
    # Sorting imports (time sorts after logging, asyncio before) and re-wrapping lines is ruff's job; the
    # real path makes ruff use the repo's settings and first-party detection even for a temp target.
    text = _ruff(text, "check", "--select", "I", "--fix-only")
    target.write_text(_ruff(text, "format"), encoding="utf-8")


def _ruff(text: str, *args: str) -> str:
    cmd = [sys.executable, "-m", "ruff", *args, "--quiet", "--stdin-filename", str(PACKAGE / "client.py"), "-"]
    return subprocess.run(cmd, input=text, stdout=subprocess.PIPE, text=True, check=True, cwd=PACKAGE.parent).stdout


def main(argv: list[str] | None = None) -> int:
    """Regenerate client.py, or with --check fail if it is out of date."""
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 if client.py is stale")
    check = parser.parse_args(argv).check
    if not check:
        generate()
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp, TARGET.name)
        generate(fresh)
        if fresh.read_bytes() == TARGET.read_bytes():
            return 0
    print(f"{TARGET.name} is out of date with {SOURCE.name}: run `{COMMAND}`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
