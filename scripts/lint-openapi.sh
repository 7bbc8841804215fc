#!/usr/bin/env bash
# Lint the OpenAPI document vireo serves with Spectral (OpenAPI + OWASP API Security rules, .spectral.yaml)
# and Redocly (redocly.yaml). Starts vireo on a throwaway PGlite to fetch /api/v1/docs/json, or lints the
# file given as the first argument. Fails on any error; warnings are printed.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

document="$work/openapi.json"
if [ $# -gt 0 ]; then
  cp "$1" "$document"
else
  unset DATABASE_URL REDIS_URL
  NODE_ENV=test LOG_LEVEL=info HOST=127.0.0.1 PORT=0 PGLITE_DIR="$work/pglite" JOBS_CONCURRENCY=0 \
    start_vireo 'lint-openapi' bun src/index.ts
  curl -fsS "$base/api/v1/docs/json" -o "$document"
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
fi
echo "lint-openapi: $(jq -r '"\(.info.title) \(.info.version), OpenAPI \(.openapi), \(.paths | length) paths"' "$document")"

status=0
echo "== spectral (spectral:oas + OWASP API Security 2023)"
bunx spectral lint --ruleset .spectral.yaml --fail-severity error --display-only-failures=false "$document" || status=1

echo "== redocly"
REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true bunx redocly lint --config redocly.yaml "$document" || status=1

if [ "$status" -ne 0 ]; then echo "lint-openapi: errors found" >&2; fi
exit "$status"
