#!/usr/bin/env bash
# Build vireo's image with podman on a machine that reaches no container registry (CI, this dev machine).
#   scripts/container-build.sh [TAG]      (default vireo:ci)
# No container registry is reachable, so the Dockerfile's base image (FROM oven/bun:X-slim) is a local stand-in with
# the contract of the official slim image: Debian bookworm slimmed as Debian's -slim images are (no docs, man pages,
# locales), Bun X at /usr/local/bin/bun (+ bunx, and `node` on the fallback PATH), user and group bun (uid/gid 1000),
# WORKDIR /home/bun/app, the same docker-entrypoint.sh, ENV and CMD. It is debootstrapped (minbase) from the Debian
# mirror apt already uses; that rootfs is cached in $VIREO_CONTAINER_CACHE, so only the first run pays for it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/container-env.sh
. scripts/container-env.sh

tag="${1:-vireo:ci}"

base="$(awk '$1 == "FROM" { print $2; exit }' Dockerfile)"
bun_version="${base#*:}"
bun_version="${bun_version%%[-@]*}"

if ! podman image exists "$base"; then
  # The mirror apt uses (deb822 or one-line sources), so the stand-in comes from where the host's packages come from.
  mirror="$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$1 == "URIs:" && $2 !~ /security/ { print $2; exit }')"
  [ -n "$mirror" ] || mirror="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $2 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }')"
  mirror="${mirror:-http://deb.debian.org/debian}"
  rootfs_tar="$cache/bookworm-minbase-$(dpkg --print-architecture).tar"
  if [ ! -s "$rootfs_tar" ]; then
    echo "container: debootstrapping bookworm (minbase) from $mirror"
    tmp="$(mktemp -d)"
    debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
      { tail -30 "$tmp/debootstrap.log" >&2; rm -rf "$tmp"; exit 1; }
    rm -rf "$tmp/rootfs/var/cache/apt/archives/"*.deb "$tmp/rootfs/var/lib/apt/lists/"*
    tar -C "$tmp/rootfs" -cf "$rootfs_tar.part" .
    mv "$rootfs_tar.part" "$rootfs_tar"
    rm -rf "$tmp"
  fi

  # Bun's binary: the one installed here if it is the pinned version, else the npm package of that version.
  bun_bin="$(command -v bun || true)"
  [ -n "$bun_bin" ] && bun_bin="$(readlink -f "$bun_bin")"
  if [ -z "$bun_bin" ] || [ "$("$bun_bin" --version)" != "$bun_version" ]; then
    npm_dir="$cache/bun-$bun_version"
    [ -x "$npm_dir/node_modules/.bin/bun" ] || npm install --prefix "$npm_dir" --no-save "bun@$bun_version" >/dev/null
    bun_bin="$(readlink -f "$npm_dir/node_modules/.bin/bun")"
  fi

  echo "container: importing $base (stand-in: Debian bookworm slim + Bun $bun_version)"
  stage="$(mktemp -d)"
  trap 'rm -rf "$stage"' EXIT
  tar -C "$stage" -xf "$rootfs_tar"
  # Debian's slim images: what debuerreotype-slimify excludes, kept excluded for packages installed later.
  cat >"$stage/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$stage/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$stage/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$stage/usr/share/"{groff,info,linda,lintian/overrides,locale,man}/*
  install -m 0755 "$bun_bin" "$stage/usr/local/bin/bun"
  ln -s bun "$stage/usr/local/bin/bunx"
  mkdir -p "$stage/usr/local/bun-node-fallback-bin"
  ln -s /usr/local/bin/bun "$stage/usr/local/bun-node-fallback-bin/node"
  # The official image's entrypoint: flags or a non-command first argument are handed to bun.
  cat >"$stage/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e

if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- /usr/local/bin/bun "$@"
fi

exec "$@"
EOF
  chmod 0755 "$stage/usr/local/bin/docker-entrypoint.sh"
  chroot "$stage" /bin/sh -c 'groupadd bun --gid 1000 && useradd bun --uid 1000 --gid bun --shell /bin/sh --create-home && mkdir -p /home/bun/app && bun --version >/dev/null'
  tar -C "$stage" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/bun-node-fallback-bin' \
    --change 'ENV BUN_RUNTIME_TRANSPILER_CACHE_PATH=0' \
    --change 'ENV BUN_INSTALL_BIN=/usr/local/bin' \
    --change 'WORKDIR /home/bun/app' \
    --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
    --change 'CMD ["/usr/local/bin/bun"]' \
    - "$base" >/dev/null
  rm -rf "$stage"
  trap - EXIT
fi

# Package downloads pass through a TLS-inspecting proxy here: the build sees the host's CA bundle, and an npmrc
# naming it (Bun reads npmrc's cafile), as build-time mounts that do not end up in any layer.
ca="${VIREO_BUILD_CA:-/etc/ssl/certs/ca-certificates.crt}"
npmrc="$cache/npmrc"
echo "cafile=/etc/ssl/certs/host-ca.crt" >"$npmrc"
echo "container: building $tag"
podman build --format docker --network=host --pull=never \
  -v "$ca:/etc/ssl/certs/host-ca.crt:ro" -v "$npmrc:/root/.npmrc:ro" \
  -t "$tag" .
