# Podman settings for vireo's container scripts (source it after `cd` to the repository root). Sets $cache (kept
# between runs: the debootstrapped base, Bun's npm package if needed) and exports CONTAINERS_CONF.
cache="${VIREO_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vireo-container}"
mkdir -p "$cache"

# All in one containers.conf, because of this kind of host: crun rejects hybrid cgroup v1/v2 hierarchies (runc
# does not), rlimits cannot be raised above the host's hard limits, and there is no systemd (no cgroup manager,
# no journald).
export CONTAINERS_CONF="$cache/containers.conf"
cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF

missing=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
