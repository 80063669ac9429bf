#!/usr/bin/env bash
# Load test of softreg serve on loopback: trains a run on Fashion-MNIST, starts `softreg serve` as its own
# process, and has serve_load's CLIENTS clients POST a test image to /predict for SECONDS seconds.
# Prints serve_load's JSON (requests per second, p50/p90/p99 latency, errors) and fails on any error.
#   bench/serve_load.sh build/softreg build/bench/serve_load [CLIENTS=50] [SECONDS=10]
set -euo pipefail
cli=$1 load=$2 clients=${3:-50} seconds=${4:-10}
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/runs"
"$cli" train --out "$work/runs/recipe" --quiet --no-plots
"$cli" serve --runs "$work/runs" --port 0 >"$work/serve.log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 200); do
  url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$work/serve.log" | head -1 || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "serve_load.sh: the server printed no URL" >&2; cat "$work/serve.log" >&2; exit 1; }
curl -sf -o "$work/image.png" "${url}api/runs/recipe/test-images/0.png"
"$load" "$url" recipe "$work/image.png" "$clients" "$seconds"
