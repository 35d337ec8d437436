"""The pricer's tests: `unit/` (the pure domain) and `integration/` (database, bus, HTTP, CLI).
Their factories live in `pricer_testkit.py` beside this file."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:  # `from pricer_testkit import ...` from unit/ and integration/
    sys.path.insert(0, _HERE)
