"""The size rules the team keeps (README "Style"): no Python file over 400 lines, no class over 200."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MAX_FILE_LINES = 400
MAX_CLASS_LINES = 200


def _python_files() -> list[Path]:
    """Every tracked Python file (git ls-files: no virtualenv, build or cache directory slips in)."""
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def long_files(paths: Sequence[Path]) -> dict[str, int]:
    """Files over MAX_FILE_LINES lines, with their line counts."""
    counts = {
        p.name if not p.is_relative_to(ROOT) else p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
        for p in paths
    }
    return {name: n for name, n in counts.items() if n > MAX_FILE_LINES}


def big_classes(paths: Sequence[Path]) -> dict[str, int]:
    """Classes over MAX_CLASS_LINES lines (decorators aside), as file:Class, with their line counts."""
    big = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    big[f"{path.name}:{node.name}"] = lines
    return big


def test_the_walk_sees_the_code() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _python_files()}
    assert {"service.py", "aifx/features.py", "aifx/serving/predictor.py", "runners/stage.py"} <= names
    assert len(names) > 150


def test_no_file_over_400_lines() -> None:
    assert long_files(_python_files()) == {}


def test_no_class_over_200_lines() -> None:
    assert big_classes(_python_files()) == {}


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    fits = tmp_path / "fits.py"
    fits.write_text("class Fits:\n" + "\n".join(f"    x{i} = {i}" for i in range(MAX_CLASS_LINES - 1)) + "\n")
    assert long_files([fits]) == {} and big_classes([fits]) == {}
    long = tmp_path / "long.py"
    long.write_text("class Long:\n" + "\n".join(f"    x{i} = {i}" for i in range(MAX_FILE_LINES)) + "\n")
    assert long_files([long]) == {"long.py": MAX_FILE_LINES + 1}
    assert big_classes([long]) == {"long.py:Long": MAX_FILE_LINES + 1}
