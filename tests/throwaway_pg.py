"""A PostgreSQL cluster of a test's own, to crash and restart (`pg_ctl stop -m immediate`)
without touching the server the rest of the suite shares. Durable settings (fsync on), so a
crash loses exactly what a real one would: nothing committed.

Run as root, the cluster belongs to the `postgres` user (`runuser -u postgres --`), as in
scripts/test.sh.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from processes import free_port


def find_pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()])
    if found and os.access(Path(found[-1]) / "initdb", os.X_OK):
        return Path(found[-1])
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class ThrowawayPostgres:
    def __init__(self) -> None:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            pytest.skip("PostgreSQL server binaries (initdb) not found")
        self.bin = pg_bin
        self.root = Path(tempfile.mkdtemp(prefix="drgdip-crash-pg."))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self._as_pg: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_pg:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                  "-A", "trust", "--no-sync")
        conf = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n")
        self._run("sh", "-c", f"cat >> '{self.data}/postgresql.conf'", stdin=conf, binary=False)
        self.start()

    def _run(self, tool: str, *args: str, stdin: str | None = None, binary: bool = True) -> None:
        exe = str(self.bin / tool) if binary else tool
        subprocess.run([*self._as_pg, exe, *args], input=stdin, text=True, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop the server the way a crash does: no checkpoint, connections cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                  "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
