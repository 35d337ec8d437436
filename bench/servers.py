"""Throwaway servers and service processes for the distributed benchmarks.

A PostgreSQL cluster and a single-node KRaft Kafka broker of the benchmark's own (free ports,
data in a temporary folder, as `scripts/test.sh` starts them), the five services as separate
`drgdip serve <service>` processes, and what /proc says about a process: CPU seconds and
resident memory. Each server can be stopped and started again on the same data (the faults
the benchmark injects). Children started here get SIGTERM if the benchmark dies
(PR_SET_PDEATHSIG), so a killed benchmark leaves no broker or service behind.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
DRGDIP = str(Path(sys.executable).with_name("drgdip"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with log.open("ab") as out:
        # its own session: a Ctrl-C reaches the benchmark only, which stops everything in order
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_die_with_parent)


# --------------------------------------------------------------------------- /proc

def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from the 3rd (state) on


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for d in glob.glob("/proc/[0-9]*"):
        st = _stat(int(d[6:]))
        if st is not None:
            tree.setdefault(int(st[1]), []).append(int(d[6:]))
    return tree


def cpu_seconds(pid: int, tree: dict[int, list[int]] | None = None) -> float | None:
    """CPU (user + system) of a process and its live descendants, plus what its reaped children
    spent (cutime + cstime): PostgreSQL's backends come and go under the postmaster."""
    st = _stat(pid)
    if st is None:
        return None
    ticks = sum(int(x) for x in st[11:15])  # utime stime cutime cstime
    tree = _children() if tree is None else tree
    todo = list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        cst = _stat(child)
        if cst is not None:
            ticks += int(cst[11]) + int(cst[12])
            todo.extend(tree.get(child, []))
    return ticks / CLOCK_TICKS


def schedstat(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread — its
    event loop — from /proc/<pid>/schedstat; the rest of the wall time it was blocked (waiting
    for the database, the broker, a timer). None when the kernel does not keep schedstats."""
    try:
        run, wait, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(run) / 1e9, int(wait) / 1e9


def memory(pid: int) -> tuple[int, int] | None:
    """(resident, peak resident) bytes of one process (VmRSS, VmHWM)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    got = {}
    for line in status.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line[:5]] = int(line.split()[1]) * 1024
    return (got.get("VmRSS", 0), got.get("VmHWM", 0)) if got else None


def tree_rss(pid: int, tree: dict[int, list[int]]) -> int:
    """Resident bytes of a process and its descendants (PostgreSQL: postmaster + backends; shared
    buffers are counted once per process that touched them, so this overstates)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        m = memory(p)
        total += m[0] if m else 0
        todo.extend(tree.get(p, []))
    return total


# --------------------------------------------------------------------------- PostgreSQL

def find_pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                   key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()])
    if found and os.access(Path(found[-1]) / "initdb", os.X_OK):
        return Path(found[-1])
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class Postgres:
    """A cluster of the benchmark's own, durable (fsync on, as in production): a crash
    (`pg_ctl stop -m immediate`) loses exactly what a real one would, nothing committed."""

    def __init__(self, root: Path, settings: str = "") -> None:
        pg_bin = find_pg_bin()
        if pg_bin is None:
            raise SystemExit("PostgreSQL server binaries (initdb) not found: install 'postgresql' or pass --pg")
        self.bin, self.root = pg_bin, root / "pg"
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)
        root.chmod(0o755)
        self.data = self.root / "data"
        self.port = free_port()
        self._as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_pg:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                  "-A", "trust", "--no-sync")
        conf = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.root}'\nmax_connections = 200\n"
                "shared_buffers = 128MB\nlogging_collector = off\n" + settings)
        self._run("sh", "-c", f"cat >> '{self.data}/postgresql.conf'", stdin=conf, binary=False)
        self.running = False
        self.start()

    def _run(self, tool: str, *args: str, stdin: str | None = None, binary: bool = True) -> None:
        exe = str(self.bin / tool) if binary else tool
        subprocess.run([*self._as_pg, exe, *args], input=stdin, text=True, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "120", "start")
        self.running = True

    def crash(self) -> None:
        """Stop the server the way a crash does: no checkpoint, connections cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        self.running = False

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def destroy(self) -> None:
        if not self.running:
            return
        try:
            self.crash()
        except subprocess.SubprocessError:  # pg_ctl failed: make sure our postmaster goes
            pid = self.pid
            if pid is not None and str(self.data) in _cmdline(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.running = False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- Kafka

class Kafka:
    """A single-node KRaft broker from the jars `scripts/test.sh` caches (.cache/kafka/<version>)."""

    def __init__(self, root: Path, version: str = "4.1.1") -> None:
        lib = REPO / ".cache" / "kafka" / version / "lib"
        if not (lib / ".complete").is_file():
            raise SystemExit(f"no Kafka {version} jars in {lib}: run `make test` once (it resolves "
                             "them with Maven), or pass --kafka HOST:PORT")
        if shutil.which("java") is None:
            raise SystemExit("java not found (OpenJDK 17 runs the broker), or pass --kafka HOST:PORT")
        conf_dir = REPO / "deploy" / "kafka"
        self.root = root / "kafka"
        (self.root / "logs").mkdir(parents=True)
        self.port, self.cport = free_port(), free_port()
        while self.cport == self.port:
            self.cport = free_port()
        props = (conf_dir / "server.properties.template").read_text()
        props = props.replace("@PORT@", str(self.port)).replace("@CPORT@", str(self.cport)) \
            .replace("@DATA@", str(self.root / "data"))
        (self.root / "server.properties").write_text(props)
        major = int(version.split(".")[0])
        self.logopt = (f"-Dlog4j2.configurationFile={conf_dir / 'log4j2.properties'}" if major >= 4
                       else f"-Dlog4j.configuration=file:{conf_dir / 'log4j.properties'}")
        self.cp = f"{lib}/*"
        cluster = uuid.uuid4()
        while (cid := base64.urlsafe_b64encode(cluster.bytes).decode().rstrip("=")).startswith("-"):
            cluster = uuid.uuid4()
        subprocess.run(["java", "-Xmx256m", self.logopt, f"-Dkafka.logs.dir={self.root / 'logs'}",
                        "-cp", self.cp, "kafka.tools.StorageTool", "format", "-t", cid,
                        "-c", str(self.root / "server.properties"), "--ignore-formatted"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _started_count(self) -> int:
        log = self.root / "logs" / "server.log"
        return log.read_text(errors="replace").count("Kafka Server started") if log.exists() else 0

    def spawn(self) -> None:
        """Start the broker (on the same data and ports as before); `started()` tells when it is up."""
        self._seen = self._started_count()
        self.proc = _spawn(["java", "-Xms512m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                            "-Djava.awt.headless=true", self.logopt, f"-Dkafka.logs.dir={self.root / 'logs'}",
                            "-cp", self.cp, "kafka.Kafka", str(self.root / "server.properties")],
                           self.root / "stdout.log")

    def started(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"Kafka exited during start-up (logs in {self.root})")
        return self._started_count() > self._seen

    def start(self, timeout: float = 120) -> None:
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self.started():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka not ready after {timeout:.0f} s (logs in {self.root})")
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), killed if it takes longer than `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def destroy(self) -> None:
        self.stop(30)


# --------------------------------------------------------------------------- services

@dataclass
class Service:
    """One `drgdip serve <stage>` process on a fixed port (kept across restarts). `name` tells the
    instances of a stage apart (grouper, grouper.2, …); `stage` is the service it runs (default:
    the name)."""

    name: str
    env: dict[str, str]
    log_dir: Path
    stage: str = ""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0
    cpu_before: float = 0.0  # CPU of the incarnations killed before this one
    cpu_last: float = 0.0
    peak_rss: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, wait: bool = True) -> Service:
        """Spawn the process (from the main thread: its parent-death signal is tied to the
        spawning thread); with `wait`, block until /readyz answers 200."""
        self.starts += 1
        env = {**os.environ, **self.env, "DRGDIP_PORT": str(self.port), "DRGDIP_LOG_LEVEL": "WARNING"}
        self.proc = _spawn([DRGDIP, "serve", self.stage or self.name], self.log_dir / f"{self.name}-{self.starts}.log", env)
        if wait:
            self.wait_ready()
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_dir}")

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s; see {self.log_dir}")
            time.sleep(0.3)

    def sample(self, tree: dict[int, list[int]]) -> tuple[float, int]:
        """(CPU seconds over every incarnation, resident bytes now) — 0 bytes while it is down."""
        pid = self.pid
        if pid is None:
            return self.cpu_before + self.cpu_last, 0
        cpu = cpu_seconds(pid, tree)
        if cpu is not None:
            self.cpu_last = cpu
        mem = memory(pid)
        if mem:
            self.peak_rss = max(self.peak_rss, mem[1])
        return self.cpu_before + self.cpu_last, mem[0] if mem else 0

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.cpu_before += self.cpu_last  # what the killed process spent (to its last sample)
        self.cpu_last = 0.0

    def stop(self) -> None:
        """A clean stop (SIGTERM: the consumer leaves its group); what it spent stays counted."""
        if self.proc is None or self.proc.poll() is not None:
            return
        tree = _children()
        if (cpu := cpu_seconds(self.proc.pid, tree)) is not None:
            self.cpu_last = cpu
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.cpu_before += self.cpu_last
        self.cpu_last = 0.0
