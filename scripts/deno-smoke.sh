#!/usr/bin/env bash
# Start vireo under Deno on a throwaway PGlite and check that it answers in the envelope:
# liveness, the model list (admin key), a validation error, an unknown route; then a graceful SIGTERM.
# Then the main flows (keys, inference, batch, file VAD, jobs, errors, the realtime WebSocket) and the HTTP parser's
# refusals, as bun tests pointed at Deno processes (TEST_RUNTIME=deno: test/ops/runtime-flows.test.ts,
# test/ops/http-parser.test.ts); the suite runs the same files on Bun.
# Deno comes from the `deno` devDependency (its npm package ships the binary); a missing Deno fails, never skips.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# The npm package's launcher unpacks the native binary on first use; run that directly so signals reach vireo.
node_modules/.bin/deno --version >/dev/null
DENO="${DENO:-node_modules/deno/deno}"
[ -x "$DENO" ] || DENO=node_modules/.bin/deno

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

admin_key="smoke_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
NODE_ENV=test LOG_LEVEL=info HOST=127.0.0.1 PORT=0 PGLITE_DIR="$work/pglite" ADMIN_API_KEY="$admin_key" JOBS_CONCURRENCY=0 \
  start_vireo 'deno smoke' "$DENO" run -A src/deno.ts
echo "deno smoke: vireo listening at $base ($("$DENO" --version | head -1))"

passed=0
failed=0
# check NAME EXPECTED_STATUS JQ_FILTER CURL_ARGS...: the status matches and the filter is true on the body.
check() {
  local name="$1" want="$2" filter="$3"
  shift 3
  local status
  status="$(curl -sS -o "$work/body.json" -D "$work/headers.txt" -w '%{http_code}' "$@")" || status="curl-failed"
  local request_id
  request_id="$(grep -i '^x-request-id:' "$work/headers.txt" | cut -d' ' -f2 | tr -d '\r' || true)"
  if [ "$status" = "$want" ] && [ -n "$request_id" ] && jq -e --arg rid "$request_id" "$filter" "$work/body.json" >/dev/null 2>&1; then
    passed=$((passed + 1))
    echo "  ok   $name ($status)"
  else
    failed=$((failed + 1))
    echo "  FAIL $name: status $status (want $want), body: $(head -c 500 "$work/body.json")" >&2
  fi
}

success='.success == true and (.errors | type == "array") and has("data")'
error_of() { echo ".success == false and .error.code == \"$1\" and (.error.message | type == \"string\") and .request_id == \$rid"; }

check 'health live' 200 "$success and .data.status == \"alive\"" "$base/api/v1/health/live"

check 'models' 200 "$success and ([.data[] | select(.name == \"silero-vad\" and .status == \"ready\")] | length == 1)" \
  -H "Authorization: Bearer $admin_key" "$base/api/v1/models"
frame="$(jq -nc '{inputs: [
  {name: "input", shape: [1, 512], datatype: "FP32", data: [range(512) | 0]},
  {name: "state", shape: [2, 1, 128], datatype: "FP32", data: [range(256) | 0]},
  {name: "sr", shape: [], datatype: "INT64", data: [16000]}]}')"
check 'inference' 200 "$success and (.data.outputs | map(select(.name == \"output\"))[0].data[0] | . >= 0 and . <= 1)" \
  -X POST -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' --data "$frame" \
  "$base/api/v1/models/silero-vad/infer"
check 'validation error' 400 "$(error_of VALIDATION_ERROR) and (.error.details | length > 0)" \
  -X POST -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' --data '{"name": 42, "scopes": ["root"]}' \
  "$base/api/v1/keys"
check 'unknown route' 404 "$(error_of NOT_FOUND)" "$base/api/v1/no-such-route"
docs_status="$(curl -sS -o "$work/openapi.json" -w '%{http_code}' "$base/api/v1/docs/json")"
if [ "$docs_status" = 200 ] && jq -e '(.openapi | startswith("3.")) and (.paths | length > 0)' "$work/openapi.json" >/dev/null; then
  passed=$((passed + 1))
  echo "  ok   OpenAPI document ($(jq '.paths | length' "$work/openapi.json") paths)"
else
  failed=$((failed + 1))
  echo "  FAIL OpenAPI document: status $docs_status" >&2
fi
check 'unauthorized' 401 "$(error_of UNAUTHORIZED)" "$base/api/v1/keys/me"
if jq -e '.paths["/api/v1/audio/vad/stream"].get.responses["101"]' "$work/openapi.json" >/dev/null; then
  passed=$((passed + 1))
  echo "  ok   the realtime stream is served and documented"
else
  failed=$((failed + 1))
  echo "  FAIL the OpenAPI document lacks GET /api/v1/audio/vad/stream (101)" >&2
fi

kill -TERM "$pid"
if wait "$pid"; then
  passed=$((passed + 1))
  echo "  ok   graceful shutdown (exit 0)"
else
  failed=$((failed + 1))
  echo "  FAIL graceful shutdown: exit $?" >&2
fi
pid=""
if ! grep -q '"msg":"shutdown complete"' "$work/out.log"; then
  failed=$((failed + 1))
  echo "  FAIL no 'shutdown complete' log line" >&2
fi

echo "deno smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

echo "deno smoke: main flows and HTTP parser refusals on Deno"
# A partial run: bunfig.toml's per-file coverage thresholds do not apply (.ci/bunfig.partial.toml).
TEST_RUNTIME=deno bun test --config=.ci/bunfig.partial.toml --timeout 300000 test/ops/runtime-flows.test.ts test/ops/http-parser.test.ts
