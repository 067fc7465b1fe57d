#!/bin/sh
# The console's charting library, uPlot (MIT, no dependencies), from npm into the package's static files:
# the console serves it itself (no CDN at run time, it works offline) and a wheel built afterwards ships
# it (package data). Pinned by version, each file checked against its sha256. scripts/bootstrap.sh runs
# this; run it again after changing the pin. Usage: scripts/vendor_console.sh [NODE_PREFIX]
set -eu
cd "$(dirname "$0")/.."
UPLOT="uplot@1.6.32"
prefix="${1:-.venv/node}"
dest="src/shopfloor/gateway/console/static/vendor"
command -v npm >/dev/null || { echo "vendor_console: npm is missing (apt-get install npm)" >&2; exit 1; }
if [ ! -f "$prefix/node_modules/uplot/package.json" ] ||
   ! grep -q "\"version\": \"${UPLOT#*@}\"" "$prefix/node_modules/uplot/package.json"; then
  mkdir -p "$prefix"
  npm install --no-audit --no-fund --prefix "$prefix" "$UPLOT" >/dev/null
fi
mkdir -p "$dest"
cp "$prefix/node_modules/uplot/dist/uPlot.iife.min.js" "$dest/uplot.js"
cp "$prefix/node_modules/uplot/dist/uPlot.min.css" "$dest/uplot.css"
cp "$prefix/node_modules/uplot/LICENSE" "$dest/uplot.LICENSE.txt"
cd "$dest"
sha256sum -c --quiet <<SUMS
19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f  uplot.js
df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04  uplot.css
8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd  uplot.LICENSE.txt
SUMS
