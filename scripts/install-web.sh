#!/usr/bin/env bash
# Put the dashboard's chart library (Apache ECharts, pinned) in .cache/web, once; prints the
# directory the gateway serves it from (its `DRGDIP_WEB_ASSETS` default).
#
#   bash scripts/install-web.sh
#
# The library comes from the npm registry with the machine's npm and is served by the gateway
# itself (bureau networks have no internet); it is never copied into the repository. Without it
# the dashboard still loads and says how to install it.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ECHARTS_VERSION=${ECHARTS_VERSION:-6.1.0}
DEST=${DRGDIP_WEB_ASSETS:-"$ROOT/.cache/web"}
FILE="$DEST/echarts/echarts.min.js"

log() { printf '[install-web] %s\n' "$*" >&2; }

if [ -f "$DEST/echarts/VERSION" ] && [ "$(cat "$DEST/echarts/VERSION")" = "$ECHARTS_VERSION" ] && [ -f "$FILE" ]; then
  echo "$DEST"
  exit 0
fi
command -v npm >/dev/null || { log "npm not found: install Node.js and npm, then run this again"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drgdip-web.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
log "installing echarts@$ECHARTS_VERSION from the npm registry"
(cd "$WORK" && npm install --no-audit --no-fund --ignore-scripts --silent --prefix "$WORK" \
  "echarts@$ECHARTS_VERSION") >"$WORK/npm.log" 2>&1 || { tail -n 20 "$WORK/npm.log" >&2; exit 1; }
SRC="$WORK/node_modules/echarts/dist/echarts.min.js"
[ -f "$SRC" ] || { log "the echarts package has no dist/echarts.min.js"; exit 1; }
mkdir -p "$DEST/echarts"
install -m 0644 "$SRC" "$FILE.tmp"
install -m 0644 "$WORK/node_modules/echarts/LICENSE" "$DEST/echarts/LICENSE" 2>/dev/null || true
mv "$FILE.tmp" "$FILE"
echo "$ECHARTS_VERSION" >"$DEST/echarts/VERSION"
log "echarts $ECHARTS_VERSION in $DEST/echarts"
echo "$DEST"
