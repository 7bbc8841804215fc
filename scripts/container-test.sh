#!/usr/bin/env bash
# Build vireo's image from this checkout with podman (scripts/container-build.sh) and run it as an operator would:
# the image stays within its size budget, and on each inference backend (native `cpu`, then `wasm` forced with
# INFERENCE_BACKENDS) it becomes ready, answers an authenticated model list, runs Silero VAD on a speech fixture,
# runs as a user that is not root, passes its own HEALTHCHECK (run by hand: there is no systemd to schedule it),
# and exits 0 on SIGTERM after logging its shutdown. Then it scales out as deploy/kubernetes/ does: two replicas on a
# read-only root filesystem, started together against one PostgreSQL database and one Redis (TEST_POSTGRES_ADMIN_URL,
# TEST_REDIS_URL; required when CI is set), sharing what they must. Removes the containers and images it created.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# shellcheck source=scripts/container-env.sh
. scripts/container-env.sh

MAX_IMAGE_BYTES="${MAX_IMAGE_BYTES:-300000000}"
tag="localhost/vireo:ci-$$"
base="$(awk '$1 == "FROM" { print $2; exit }' Dockerfile)"
base_existed=false
podman image exists "$base" && base_existed=true
work="$(mktemp -d)"
containers=()
database=""
cleanup() {
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  [ -z "$database" ] || psql "$TEST_POSTGRES_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  $base_existed || podman rmi -f "$base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

scripts/container-build.sh "$tag" >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
echo "container: built $tag in $((SECONDS - started)) s"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "  ok   $1"; }
fail() { failed=$((failed + 1)); echo "  FAIL $1" >&2; }

size="$(podman image inspect --format '{{.Size}}' "$tag")"
if [ "$size" -le "$MAX_IMAGE_BYTES" ]; then ok "image size $((size / 1000000)) MB (at most $((MAX_IMAGE_BYTES / 1000000)) MB)"; else fail "image size $((size / 1000000)) MB is over $((MAX_IMAGE_BYTES / 1000000)) MB"; fi

admin_key="$(head -c 48 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
frame="$(jq -nc '{inputs: [
  {name: "input", shape: [1, 512], datatype: "FP32", data: [range(512) | 0]},
  {name: "state", shape: [2, 1, 128], datatype: "FP32", data: [range(256) | 0]},
  {name: "sr", shape: [], datatype: "INT64", data: [16000]}]}')"

# run_checks BACKEND [ENV...]: one container of the image, checked from start to SIGTERM.
run_checks() {
  local backend="$1" name="vireo-ci-$$-$1"
  shift
  containers+=("$name")
  # Scheduling the HEALTHCHECK needs systemd, which is absent: podman says so on stderr and runs the container.
  podman run -d --name "$name" -p 127.0.0.1::3000 \
    -e CORS_ORIGINS=https://app.example.com -e ADMIN_API_KEY="$admin_key" "$@" "$tag" >/dev/null 2>"$work/run.err" ||
    { cat "$work/run.err" >&2; fail "$backend: podman run"; return; }
  local url="http://$(podman port "$name" 3000/tcp)"
  local status=""
  for _ in $(seq 1 1200); do
    status="$(curl -s -o "$work/ready.json" -w '%{http_code}' "$url/api/v1/health/ready" || true)"
    [ "$status" = 200 ] && break
    [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || break
    sleep 0.25
  done
  if [ "$status" = 200 ] && jq -e '.data.status == "ready"' "$work/ready.json" >/dev/null; then ok "$backend: /api/v1/health/ready 200 ready"; else
    fail "$backend: not ready (status $status): $(head -c 400 "$work/ready.json" 2>/dev/null)"
    podman logs "$name" 2>&1 | tail -20 >&2
    return
  fi

  local code
  code="$(curl -s -o "$work/models.json" -w '%{http_code}' -H "Authorization: Bearer $admin_key" "$url/api/v1/models")"
  if [ "$code" = 200 ] && jq -e --arg b "$backend" '[.data[] | select(.name == "silero-vad" and .status == "ready" and .backend == $b)] | length == 1' "$work/models.json" >/dev/null; then
    ok "$backend: GET /api/v1/models (admin key) lists silero-vad ready on $backend"
  else
    fail "$backend: GET /api/v1/models: $code $(head -c 400 "$work/models.json")"
  fi
  code="$(curl -s -o "$work/unauth.json" -w '%{http_code}' "$url/api/v1/models")"
  [ "$code" = 401 ] && ok "$backend: GET /api/v1/models without a key is 401" || fail "$backend: GET /api/v1/models without a key: $code"

  code="$(curl -s -o "$work/infer.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' \
    --data "$frame" "$url/api/v1/models/silero-vad/infer")"
  if [ "$code" = 200 ] && jq -e '.data.outputs | map(select(.name == "output"))[0].data[0] | . >= 0 and . <= 1' "$work/infer.json" >/dev/null; then
    ok "$backend: one Silero frame inferred"
  else
    fail "$backend: infer: $code $(head -c 400 "$work/infer.json")"
  fi
  code="$(curl -s -o "$work/vad.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $admin_key" -H 'Content-Type: audio/wav' \
    --data-binary @test/fixtures/audio/speech_16k_mono_s16.wav "$url/api/v1/audio/vad?fallback=never&timeout_ms=60000")"
  if [ "$code" = 200 ] && jq -e '.data.mode == "model" and (.data.segments | length == 2)' "$work/vad.json" >/dev/null; then
    ok "$backend: VAD finds the fixture's 2 speech segments with the model"
  else
    fail "$backend: VAD: $code $(head -c 400 "$work/vad.json")"
  fi

  local uid
  uid="$(podman exec "$name" id -u)"
  local pid1_uid
  pid1_uid="$(podman exec "$name" awk '/^Uid:/ { print $2 }' /proc/1/status)"
  if [ "$uid" != 0 ] && [ "$pid1_uid" != 0 ]; then ok "$backend: runs as uid $pid1_uid, not root"; else fail "$backend: runs as root (exec uid $uid, PID 1 uid $pid1_uid)"; fi

  if podman healthcheck run "$name" >/dev/null 2>&1; then ok "$backend: HEALTHCHECK passes"; else fail "$backend: HEALTHCHECK fails"; fi
  # deploy/kubernetes/ delays SIGTERM with this preStop command.
  if podman exec "$name" sleep 0; then ok "$backend: preStop's sleep is in the image"; else fail "$backend: no sleep for preStop"; fi

  # podman stop sends the image's stop signal (SIGTERM) and waits; 30 s is above SHUTDOWN_GRACE_MS (10 s).
  podman stop -t 30 "$name" >/dev/null 2>&1 || true
  local exit_code
  exit_code="$(podman inspect --format '{{.State.ExitCode}}' "$name")"
  podman logs "$name" >"$work/logs.txt" 2>&1
  if [ "$exit_code" = 0 ] && grep -q '"signal":"SIGTERM".*"msg":"shutting down"' "$work/logs.txt" &&
    grep -q '"msg":"shutdown complete"' "$work/logs.txt"; then
    ok "$backend: SIGTERM: logs its shutdown and exits 0"
  else
    fail "$backend: SIGTERM: exit code $exit_code, last log lines: $(tail -3 "$work/logs.txt")"
  fi
}

run_checks cpu
run_checks wasm -e INFERENCE_BACKENDS=wasm

# wait_ready URL NAME: 0 once URL's readiness answers 200, 1 if the container stops first.
wait_ready() {
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/api/v1/health/ready" || true)" = 200 ] && return 0
    [ "$(podman inspect --format '{{.State.Running}}' "$2")" = true ] || return 1
    sleep 0.25
  done
  return 1
}

if [ -n "${TEST_POSTGRES_ADMIN_URL:-}" ] && [ -n "${TEST_REDIS_URL:-}" ]; then
  database="vireo_container_$$"
  psql "$TEST_POSTGRES_ADMIN_URL" -qc "CREATE DATABASE $database"
  database_url="${TEST_POSTGRES_ADMIN_URL%/*}/$database"
  # The host's PostgreSQL and Redis listen on loopback: the replicas share the host's network, each on its own port.
  urls=()
  names=()
  for replica in 1 2; do
    port="$(bun -e 'const s = Bun.serve({ port: 0, fetch: () => new Response() }); console.log(s.port); s.stop()')"
    name="vireo-ci-$$-replica$replica"
    containers+=("$name")
    names+=("$name")
    urls+=("http://127.0.0.1:$port")
    # Started at once, as a Deployment's replicas are: both migrate and ensure the admin key on a fresh database.
    podman run -d --name "$name" --network host --read-only -e HOST=127.0.0.1 -e PORT="$port" \
      -e DATABASE_URL="$database_url" -e REDIS_URL="$TEST_REDIS_URL" \
      -e CORS_ORIGINS=https://app.example.com -e ADMIN_API_KEY="$admin_key" "$tag" >/dev/null 2>"$work/run-$replica.err" &
  done
  wait
  ready=0
  for i in 0 1; do
    if wait_ready "${urls[$i]}" "${names[$i]}"; then ready=$((ready + 1)); else
      cat "$work/run-$((i + 1)).err" >&2
      podman logs "${names[$i]}" 2>&1 | tail -20 >&2
    fi
  done
  if [ "$ready" = 2 ]; then ok "scale-out: 2 replicas started together on one PostgreSQL and Redis, read-only root, both ready"; else fail "scale-out: $ready of 2 replicas ready"; fi
  # A key made on one replica works on the other: keys live in the shared database.
  key="$(curl -s -X POST -H "Authorization: Bearer $admin_key" -H 'Content-Type: application/json' \
    --data '{"name":"container-ci","scopes":["inference"]}' "${urls[0]}/api/v1/keys" | jq -r '.data.key // empty')"
  code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "${urls[1]}/api/v1/keys/me")"
  if [ -n "$key" ] && [ "$code" = 200 ]; then ok "scale-out: a key created on replica 1 authenticates on replica 2"; else fail "scale-out: key from replica 1 on replica 2: $code"; fi
  for name in "${names[@]}"; do podman stop -t 30 "$name" >/dev/null 2>&1 || true; done
  codes="$(for name in "${names[@]}"; do podman inspect --format '{{.State.ExitCode}}' "$name"; done | tr '\n' ' ')"
  if [ "$codes" = "0 0 " ]; then ok "scale-out: both replicas exit 0 on SIGTERM"; else fail "scale-out: exit codes $codes"; fi
elif [ -n "${CI:-}" ]; then
  fail "scale-out: TEST_POSTGRES_ADMIN_URL and TEST_REDIS_URL must be set in CI"
else
  echo "  skip scale-out (set TEST_POSTGRES_ADMIN_URL and TEST_REDIS_URL)"
fi

echo "container: $passed passed, $failed failed ($((SECONDS - started)) s)"
[ "$failed" -eq 0 ]
