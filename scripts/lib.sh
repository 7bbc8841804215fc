# Shared by the scripts that start vireo as a real process (source it after `cd` to the repository root).
# Sets $work (a temporary folder removed on exit) and, after start_vireo, $pid and $base.

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# start_vireo LABEL COMMAND...: run COMMAND (with the caller's environment) in the background, logging to
# $work/out.log, and wait for its "vireo listening" line; sets $pid and $base (no trailing slash), or exits 1.
start_vireo() {
  local label="$1"
  shift
  "$@" >"$work/out.log" 2>"$work/err.log" &
  pid=$!
  base=""
  for _ in $(seq 1 3000); do
    base="$(jq -r 'select(.msg == "vireo listening") | .url' "$work/out.log" 2>/dev/null | head -1)"
    [ -n "$base" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$base" ]; then
    echo "$label: vireo did not start" >&2
    cat "$work/out.log" "$work/err.log" >&2
    exit 1
  fi
  base="${base%/}"
}
