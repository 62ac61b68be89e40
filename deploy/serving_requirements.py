"""The serving requirements: the lock file's pins of what the serving code imports, and what those need.

`requirements.lock` also pins training (TensorFlow, Keras, pandas) and the tools (pytest, mypy, ...);
a container needs neither. The closure is read from the installed packages' metadata (the venv that
`make install` made from the lock), so it changes only when the lock does.

    python -m deploy.serving_requirements [--out FILE]
"""

from __future__ import annotations

import argparse
import re
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
# What service.py, aifx/, runners/ and experiments/ import (the import-linter contracts keep TensorFlow,
# Keras and training out), plus the log formatter and the PostgreSQL driver's binary build.
ROOTS = (
    "bentoml",
    "numpy",
    "scipy",
    "TA-Lib",
    "pydantic",
    "pydantic-settings",
    "msgspec",
    "prometheus-client",
    "SQLAlchemy",
    "psycopg[binary]",
    "fastapi",
    "httpx",
    "aiohttp",
    "alembic",
    "ai-edge-litert",
    "python-json-logger",
    "PyYAML",
    "uvloop",  # uvicorn takes these when present, as the venv serves
    "httptools",
)
NEVER = ("tensorflow", "tensorflow-cpu", "keras", "pandas", "pytest", "mypy", "ruff", "matplotlib")


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one dash."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(lock: Path) -> dict[str, str]:
    """canonical name -> the lock's `name==version` line."""
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            pins[canonical(line.split("==", 1)[0])] = line
    return pins


def closure(roots: tuple[str, ...] = ROOTS) -> set[str]:
    """Canonical names of the roots and everything they require on this platform (extras followed)."""
    platform = {key: str(value) for key, value in default_environment().items()}
    seen: set[str] = set()
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        key = canonical(req.name) + "".join(sorted(f"[{e}]" for e in req.extras))
        if key in seen:
            continue
        seen.add(key)
        seen.add(canonical(req.name))
        requires = metadata.requires(req.name) or []
        for text in requires:
            dep = Requirement(text)
            envs = [{**platform, "extra": e} for e in (req.extras or {""})]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append(dep)
    return {name for name in seen if "[" not in name}


def serving_lines(lock: Path = ROOT / "requirements.lock") -> list[str]:
    """The lock's lines for the serving closure, sorted; fails when a needed package is not pinned."""
    pins = lock_pins(lock)
    names = closure()
    missing = sorted(n for n in names if n not in pins)
    if missing:
        raise SystemExit(f"not pinned in {lock.name}: {', '.join(missing)}")
    return sorted((pins[n] for n in names), key=str.lower)


def main(argv: list[str] | None = None) -> None:
    """Print or write the serving requirements."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = "".join(f"{line}\n" for line in serving_lines())
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
