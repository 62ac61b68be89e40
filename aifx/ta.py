"""TA-Lib loaded without its pandas and polars wrappers: serving passes numpy arrays and must not import pandas."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def _load() -> ModuleType:
    """talib; pandas and polars, when not imported yet, look absent to it (it only wraps their types)."""
    hidden = [name for name in ("pandas", "polars") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import pandas` raises ImportError meanwhile
    try:
        return importlib.import_module("talib")
    finally:
        for name in hidden:
            sys.modules.pop(name, None)


talib = _load()
