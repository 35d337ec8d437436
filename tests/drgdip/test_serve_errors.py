"""`drgdip serve` with a setting it cannot start with: one line on stderr naming the setting,
exit code 2, no traceback (the newcomer's first command included)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, SHARED
from processes import DRGDIP, free_port


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRGDIP_")}
    return subprocess.run([DRGDIP, "serve", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=clean | {"DRGDIP_PORT": str(free_port()), **env})


@pytest.mark.parametrize(("args", "env", "setting"), [
    (("all",), {}, "DRGDIP_SCHEMES_DIR"),  # the README's first try: no scheme folder
    (("all", "--schemes-dir", "no/such/folder"), {}, "DRGDIP_SCHEMES_DIR"),
    (("ingest",), {"DRGDIP_BUS": "amqp://broker"}, "DRGDIP_BUS"),
    (("pricer",), {"DRGDIP_POLICY_FILE": "no/such/policy.json"}, "DRGDIP_POLICY_FILE"),
    (("ingest",), {"DRGDIP_ENVIRONMENT": "production"}, "DRGDIP_SERVICE_TOKEN"),
    (("all", "--schemes-dir", str(SHARED / "schemes")), {"DRGDIP_ENVIRONMENT": "production"},
     "DRGDIP_PSN_KEY_SECRET"),
    (("all", "--schemes-dir", str(SHARED / "schemes"), "--dictionary-scheme", "no/such/scheme"), {},
     "DRGDIP_DICTIONARY_SCHEME"),
])
def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, args, env, setting) -> None:
    r = serve(tmp_path, *args, DRGDIP_DB=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", **env)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert setting in lines[0] and "Traceback" not in lines[0]
