#!/usr/bin/env bash
# What `make test` runs: start a private PostgreSQL and a single-node KRaft Kafka broker on
# free ports, run ruff + pytest against them, stop both servers whatever happens.
#
#   bash scripts/test.sh [pytest args...]
#
# Environment knobs:
#   KAFKA_VERSION=4.1.1     Kafka broker version (verified: 4.1.1 and 3.9.1)
#   DRGDIP_KEEP_RUN_DIR=1   keep the temporary run dir (server logs) after the run
#   SKIP_RUFF=1             do not run `ruff check .`, mypy and lint-imports
# It also installs what the dashboard's browser tests need: the chart library (scripts/install-web.sh)
# and, as root, Debian's chromium with a Chinese font (Playwright comes with the test extras).
# Exported to pytest: DRGDIP_TEST_KAFKA, DRGDIP_TEST_PG, DRGDIP_TEST_REQUIRE_SERVERS=1,
# DRGDIP_PROMTOOL (scripts/install-promtool.sh).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KAFKA_VERSION=${KAFKA_VERSION:-4.1.1}
KAFKA_MAJOR=${KAFKA_VERSION%%.*}
KAFKA_DIR="$ROOT/deploy/kafka"
KAFKA_LIB="$ROOT/.cache/kafka/$KAFKA_VERSION/lib"
M2_REPO="$ROOT/.cache/m2"
PY=python3
[ -x "$ROOT/.venv/bin/python" ] && PY="$ROOT/.venv/bin/python"

log() { printf '[test.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

RUN=$(mktemp -d "${TMPDIR:-/tmp}/drgdip-test.XXXXXX")
chmod 755 "$RUN"  # the postgres user must reach its data dir inside
KAFKA_PID=""
PG_STARTED=""
PG_BIN=""
PGDATA="$RUN/pg/data"
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

as_pg() {  # run a PostgreSQL binary as the cluster owner
  if [ "$IS_ROOT" -eq 1 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop_pytest() {
  local pid
  pid=$(cat "$RUN/pytest.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  log "stopping pytest (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_kafka() {
  [ -n "$KAFKA_PID" ] || return 0
  if kill -0 "$KAFKA_PID" 2>/dev/null; then
    log "stopping Kafka (pid $KAFKA_PID)"
    kill -TERM "$KAFKA_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do  # up to 30 s for a clean shutdown
      kill -0 "$KAFKA_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$KAFKA_PID" 2>/dev/null; then
      log "Kafka did not stop in 30 s: killing it"
      kill -KILL "$KAFKA_PID" 2>/dev/null || true
    fi
  fi
  wait "$KAFKA_PID" 2>/dev/null || true
  KAFKA_PID=""
}

stop_pg() {
  [ -n "$PG_STARTED" ] || return 0
  log "stopping PostgreSQL"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1; then
    local pid
    pid=$(head -n 1 "$PGDATA/postmaster.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  fi
  PG_STARTED=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  stop_pytest
  stop_kafka
  stop_pg
  if [ "${DRGDIP_KEEP_RUN_DIR:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ -z "${PYTEST_RAN:-}" ]; }; then
    log "server logs kept in $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- 1. PostgreSQL --------------------------------------------------------------------------
find_pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
  d=$(command -v initdb 2>/dev/null || true)
  [ -n "$d" ] && dirname "$d"
  return 0
}
PG_BIN=$(find_pg_bin)
if [ -z "$PG_BIN" ]; then
  [ "$IS_ROOT" -eq 1 ] || die "PostgreSQL server binaries (initdb) not found: install the 'postgresql' package"
  log "PostgreSQL not found: installing it with apt-get"
  t=$(now)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q postgresql >/dev/null
  PG_BIN=$(find_pg_bin)
  [ -n "$PG_BIN" ] || die "apt-get installed postgresql but no initdb was found"
  log "PostgreSQL installed in $(since "$t") s"
fi
if [ "$IS_ROOT" -eq 1 ]; then
  id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster"
fi

PG_PORT=$(free_port)
t=$(now)
PG_VERSION=$("$PG_BIN/postgres" --version | sed -n "s/.*(PostgreSQL) \([0-9.]*\).*/\1/p")
log "starting PostgreSQL $PG_VERSION on port $PG_PORT"
mkdir -p "$RUN/pg"
[ "$IS_ROOT" -eq 1 ] && chown postgres: "$RUN/pg"
as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 -A trust --no-sync \
  >"$RUN/pg/initdb.log" 2>&1 || { cat "$RUN/pg/initdb.log" >&2; die "initdb failed"; }
# trust, and only over the loopback (plus the cluster's private socket directory)
as_pg tee "$PGDATA/pg_hba.conf" >/dev/null <<'EOF'
local all all               trust
host  all all 127.0.0.1/32  trust
EOF
as_pg tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF
# --- test cluster (scripts/test.sh): throwaway data, speed over durability ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN/pg'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
PG_STARTED=1
as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$RUN/pg/server.log" -w -t 60 start >/dev/null \
  || { tail -n 30 "$RUN/pg/server.log" >&2 || true; die "PostgreSQL did not start"; }
log "PostgreSQL ready on 127.0.0.1:$PG_PORT in $(since "$t") s"

# --- 2. Kafka ------------------------------------------------------------------------------
command -v java >/dev/null || die "java not found (OpenJDK 17 is needed for the Kafka broker)"
if [ ! -f "$KAFKA_LIB/.complete" ]; then
  command -v mvn >/dev/null || die "mvn not found (needed once to resolve the Kafka jars)"
  log "resolving Kafka $KAFKA_VERSION jars into ${KAFKA_LIB#"$ROOT"/} (once; cached)"
  t=$(now)
  profile=()
  [ "$KAFKA_MAJOR" -ge 4 ] && profile=(-Pkafka4)
  rm -rf "$KAFKA_LIB.tmp"
  mvn -q -B -f "$KAFKA_DIR/pom.xml" "${profile[@]}" -Dkafka.version="$KAFKA_VERSION" \
    -Dmaven.repo.local="$M2_REPO" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB.tmp" >"$RUN/mvn.log" 2>&1 \
    || { tail -n 40 "$RUN/mvn.log" >&2; die "could not resolve the Kafka jars with Maven"; }
  rm -rf "$KAFKA_LIB"
  mv "$KAFKA_LIB.tmp" "$KAFKA_LIB"
  touch "$KAFKA_LIB/.complete"
  log "Kafka jars resolved in $(since "$t") s"
fi

if [ "$KAFKA_MAJOR" -ge 4 ]; then
  LOGOPT="-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties"
else
  LOGOPT="-Dlog4j.configuration=file:$KAFKA_DIR/log4j.properties"
fi
KRUN="$RUN/kafka"
mkdir -p "$KRUN/data" "$KRUN/logs"
KAFKA_PORT=$(free_port)
KAFKA_CPORT=$(free_port)
while [ "$KAFKA_CPORT" = "$KAFKA_PORT" ] || [ "$KAFKA_CPORT" = "$PG_PORT" ]; do KAFKA_CPORT=$(free_port); done
sed -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CPORT@#$KAFKA_CPORT#g" -e "s#@DATA@#$KRUN/data#g" \
  "$KAFKA_DIR/server.properties.template" >"$KRUN/server.properties"
# a cluster id never starts with "-" (the format command would read it as an option)
CLUSTER_ID=$("$PY" -c 'import base64, uuid
while (i := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"): pass
print(i)')

t=$(now)
log "starting Kafka $KAFKA_VERSION (KRaft) on port $KAFKA_PORT (controller $KAFKA_CPORT)"
java -Xmx256m "$LOGOPT" -Dkafka.logs.dir="$KRUN/logs" -cp "$KAFKA_LIB/*" \
  kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$KRUN/server.properties" --ignore-formatted \
  >"$KRUN/format.log" 2>&1 || { cat "$KRUN/format.log" >&2; die "kafka storage format failed"; }
java -Xms512m -Xmx512m \
  -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
  -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
  "$LOGOPT" -Dkafka.logs.dir="$KRUN/logs" \
  -cp "$KAFKA_LIB/*" kafka.Kafka "$KRUN/server.properties" \
  >"$KRUN/stdout.log" 2>&1 </dev/null &
KAFKA_PID=$!
deadline=$(($(date +%s) + 120))
until grep -q "Kafka Server started" "$KRUN/logs/server.log" 2>/dev/null; do
  if ! kill -0 "$KAFKA_PID" 2>/dev/null; then
    tail -n 40 "$KRUN/stdout.log" "$KRUN/logs/server.log" >&2 2>/dev/null || true
    KAFKA_PID=""
    die "Kafka exited during startup (logs in $KRUN)"
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    tail -n 40 "$KRUN/logs/server.log" >&2 2>/dev/null || true
    die "Kafka not ready after 120 s (logs in $KRUN)"
  fi
  sleep 0.2
done
log "Kafka ready on 127.0.0.1:$KAFKA_PORT in $(since "$t") s (pid $KAFKA_PID)"

# --- 3. environment for the tests -----------------------------------------------------------
export DRGDIP_TEST_KAFKA="127.0.0.1:$KAFKA_PORT"
export DRGDIP_TEST_PG="postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/postgres"
export DRGDIP_TEST_REQUIRE_SERVERS=1
DRGDIP_PROMTOOL=$(bash scripts/install-promtool.sh) && export DRGDIP_PROMTOOL || log "promtool unavailable: the alert-rule tests will say so"
log "DRGDIP_TEST_KAFKA=$DRGDIP_TEST_KAFKA"
log "DRGDIP_TEST_PG=$DRGDIP_TEST_PG"

# --- 4. lint, then tests ----------------------------------------------------------------------
ruff_rc=0
if [ "${SKIP_RUFF:-0}" != 1 ]; then
  log "ruff check ."
  .venv/bin/ruff check . || ruff_rc=$?
  log "mypy shared services drgdip"
  .venv/bin/mypy shared services drgdip || ruff_rc=$?
  log "lint-imports (services apart, domain packages pure)"
  .venv/bin/lint-imports || ruff_rc=$?
  [ "$ruff_rc" -eq 0 ] || log "lint or type check failed (rc=$ruff_rc); running the tests anyway"
fi

bash scripts/install-k8s-tools.sh || log "Kubernetes tools not installed: the deployment tests will fail"
# the dashboard's browser tests: its chart library, Debian's Chromium and a font for Chinese text
bash scripts/install-web.sh >/dev/null || log "the chart library is not installed: the dashboard tests will fail"
if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
  if [ "$IS_ROOT" -eq 1 ]; then
    log "installing chromium and a Chinese font with apt-get (the dashboard's browser tests)"
    t=$(now)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-wqy-microhei >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
           fonts-wqy-microhei >/dev/null; } || log "chromium not installed: the browser tests are skipped"
    log "chromium installed in $(since "$t") s"
  else
    log "no /usr/bin/chromium and not root: the dashboard's browser tests are skipped"
  fi
fi
log "pytest $*"
color=()
[ -t 1 ] && color=(--color=yes)
PYTEST_RAN=1
# pytest runs as a background job that this shell `wait`s for: a TERM/INT sent to this script
# is then handled at once (the trap stops pytest and both servers) instead of after pytest ends.
exec 3<&0
(
  .venv/bin/pytest "${color[@]}" "$@" <&3 2>&1 &
  echo $! >"$RUN/pytest.pid"
  rc=0
  wait $! || rc=$?
  echo "$rc" >"$RUN/pytest.rc"
) | tee "$RUN/pytest.log" &
wait $! || true
pytest_rc=$(cat "$RUN/pytest.rc" 2>/dev/null || echo 1)

summary=$(sed -e 's/\x1b\[[0-9;]*m//g' "$RUN/pytest.log" \
  | grep -E '^=+ .*(passed|failed|error|skipped|deselected|no tests ran|xfailed|xpassed).* in [0-9.]+s' \
  | tail -n 1 || true)
[ -n "$summary" ] || summary=$(sed -e 's/\x1b\[[0-9;]*m//g' "$RUN/pytest.log" | grep -E ' in [0-9.]+s' | tail -n 1 || true)
summary=$(printf '%s' "$summary" | sed -e 's/^=* *//' -e 's/ *=*$//')
log "pytest summary: ${summary:-<none>} (exit code $pytest_rc)"

# --- 5. exit code (servers are stopped by the EXIT trap) ------------------------------------------
if [ "$pytest_rc" -eq 5 ]; then
  log "FAILED: pytest collected no tests"
  exit 5
fi
if [ "$pytest_rc" -ne 0 ]; then
  log "FAILED: pytest exit code $pytest_rc"
  exit "$pytest_rc"
fi
if [ "$ruff_rc" -ne 0 ]; then
  log "FAILED: ruff or mypy (tests passed)"
  exit "$ruff_rc"
fi
log "OK"
exit 0
