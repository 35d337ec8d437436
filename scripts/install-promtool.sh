#!/usr/bin/env bash
# Put a pinned `promtool` (Prometheus's rule checker) in .cache/promtool/bin, once; prints its path.
# The tests use it to check deploy/monitoring/alerts.yml and run its rule tests.
#
#   bash scripts/install-promtool.sh
#
# Where it comes from, first that works:
#   1. promtool already in .cache/promtool/bin at the pinned version: nothing to do;
#   2. the Debian package `prometheus` at PROMTOOL_DEB_VERSION, downloaded with `apt-get download`
#      (no root, nothing installed system-wide) and only its promtool extracted;
#   3. `go install` of the same release from the Go module proxy (Prometheus tags its Go module
#      v0.<minor>.<patch> for release 2.<minor>.<patch>), built under .cache/go.
# It exits non-zero (and the tests that need promtool are skipped, or fail under
# DRGDIP_TEST_REQUIRE_SERVERS=1) when neither source is reachable.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-2.42.0}
PROMTOOL_DEB_VERSION=${PROMTOOL_DEB_VERSION:-2.42.0+ds-5+deb12u1}
DEST="$ROOT/.cache/promtool"
BIN="$DEST/bin/promtool"

log() { printf '[install-promtool] %s\n' "$*" >&2; }

installed_version() {
  [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | sed -n 's/^promtool, version \([0-9.]*\).*/\1/p' | head -n 1
}

if [ "$(installed_version || true)" = "$PROMETHEUS_VERSION" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$DEST/bin"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/promtool.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

from_debian() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || return 1
  log "downloading the Debian package prometheus=$PROMTOOL_DEB_VERSION"
  # apt's sandbox user may not write into $WORK: that only costs a warning
  (cd "$WORK" && apt-get download -q "prometheus=$PROMTOOL_DEB_VERSION") >"$WORK/apt.log" 2>&1 \
    || { tail -n 5 "$WORK/apt.log" >&2; return 1; }
  dpkg-deb -x "$WORK"/prometheus_*.deb "$WORK/x"
  install -m 0755 "$WORK/x/usr/bin/promtool" "$BIN.tmp"
}

from_go() {
  command -v go >/dev/null || return 1
  local module="github.com/prometheus/prometheus/cmd/promtool@v0.${PROMETHEUS_VERSION#2.}"
  log "building $module (Go module proxy)"
  GOPATH="$ROOT/.cache/go" GOBIN="$WORK/gobin" GOFLAGS=-modcacherw CGO_ENABLED=0 \
    go install "$module" >"$WORK/go.log" 2>&1 || { tail -n 20 "$WORK/go.log" >&2; return 1; }
  install -m 0755 "$WORK/gobin/promtool" "$BIN.tmp"
}

if from_debian || from_go; then
  mv "$BIN.tmp" "$BIN"
  log "$("$BIN" --version 2>&1 | head -n 1)"
  echo "$BIN"
else
  rm -f "$BIN.tmp"
  log "could not get promtool $PROMETHEUS_VERSION (no Debian package, no Go toolchain or proxy)"
  exit 1
fi
