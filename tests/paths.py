"""Where the repository and the reference folder are: `../shared` beside the repository, or
DRGDIP_SHARED."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DRGDIP_SHARED", REPO.parent / "shared")).resolve()
