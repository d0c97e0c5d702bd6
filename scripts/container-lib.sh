# shellcheck shell=bash
# The container checks' shared part (scripts/test-image.sh, scripts/test-compose.sh): source it.
#
# This machine has no Docker engine and no access to a container registry, so the checks run the
# project's Dockerfile and docker-compose.yml with Debian's podman and podman-compose (PyPI), on images
# built here: a stand-in for python:3.11-slim made with debootstrap, and stand-ins for postgres:15 and
# apache/kafka:4.1.1 (configs/standins/). docs/docker.md says what that proves and what it does not.
#
# Everything podman keeps (images, layers, networks) lives under .local/container, not in the machine's
# /var/lib/containers: the stand-in images and the base rootfs are the cache a second run reuses, and
# a check never sees (or removes) images or networks that are not its own.

CT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CT_STATE=${L0_CONTAINER_STATE:-$CT_ROOT/.local/container}
# The tag the Dockerfile's FROM names; podman resolves python:3.11-slim to it without a registry.
CT_BASE_IMAGE=docker.io/library/python:3.11-slim
CT_BASE_TAR=$CT_STATE/base-bookworm-python3.tar
# The same rootfs under its true name: what the postgres and kafka stand-ins start FROM.
CT_BOOKWORM_IMAGE=localhost/l0-standins/debian:bookworm
CT_DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# podman-compose, pinned: the version this check was written against.
CT_PODMAN_COMPOSE_VERSION=1.6.0
CT_TOOLS=$CT_STATE/tools

# netavark turns on IPv4 forwarding for a bridge network (compose's); the check turns it off again if it
# was off (ct_restore_ip_forward), so the machine is left as it was found.
CT_IP_FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo unknown)
ct_restore_ip_forward() {
  [[ $CT_IP_FORWARD_BEFORE == 0 && $(cat /proc/sys/net/ipv4/ip_forward) == 1 ]] || return 0
  echo 0 >/proc/sys/net/ipv4/ip_forward 2>/dev/null || ct_log "could not turn IPv4 forwarding off again"
}

ct_log() { printf '%s: %s\n' "${CT_NAME:-container}" "$*" >&2; }
ct_die() { ct_log "FAILED: $*"; exit 1; }

# ct_apt_install PACKAGE...: install the Debian packages that are missing (one apt-get update first).
ct_apt_install() {
  local missing=() p
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  [[ $(id -u) == 0 ]] || ct_die "needs root to install ${missing[*]} (apt-get), or install them first"
  ct_log "installing ${missing[*]} (apt-get)"
  apt-get update -qq >&2 || ct_die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || ct_die "apt-get install ${missing[*]} failed"
}

# ct_setup: install podman and what it needs here, write its configuration under .local/container and
# point podman at it (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF are read by podman and podman-compose).
ct_setup() {
  [[ $(id -u) == 0 ]] || ct_die "runs as root (rootful podman: this machine's runc setup has no user namespaces to spare)"
  # runc, not crun: crun refuses this machine's hybrid cgroup v1/v2 layout. netavark + aardvark-dns:
  # compose services find each other by name (postgres, kafka).
  ct_apt_install podman runc netavark aardvark-dns iptables debootstrap ca-certificates
  mkdir -p "$CT_STATE/storage" "$CT_STATE/run" "$CT_STATE/networks" "$CT_STATE/tmp"
  # runc refuses to start a container whose rlimits exceed what it may set (no CAP_SYS_RESOURCE here);
  # podman's defaults (nofile 1048576, nproc 4194304) do. nofile: this session's own limit. nproc: 4096,
  # enough for these services; runc refused 65536 here although the session's limit is 96367.
  local nofile nproc=4096
  nofile=$(ulimit -n)
  [[ $nofile == unlimited ]] && nofile=1048576
  # podman build does not read default_ulimits: ct_build passes them itself.
  CT_ULIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
  cat >"$CT_STATE/containers.conf" <<EOF
# Written by scripts/container-lib.sh on every run; do not edit.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
# No systemd here: cgroups through the filesystem, events to a file.
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CT_STATE/tmp"
[network]
network_backend = "netavark"
network_config_dir = "$CT_STATE/networks"
EOF
  cat >"$CT_STATE/storage.conf" <<EOF
# Written by scripts/container-lib.sh on every run; do not edit.
[storage]
driver = "overlay"
graphroot = "$CT_STATE/storage"
runroot = "$CT_STATE/run"
EOF
  export CONTAINERS_CONF=$CT_STATE/containers.conf
  export CONTAINERS_STORAGE_CONF=$CT_STATE/storage.conf
  podman info --format '{{.Host.OCIRuntime.Name}}' >/dev/null 2>"$CT_STATE/podman-info.err" \
    || { cat "$CT_STATE/podman-info.err" >&2; ct_die "podman does not work on this machine (above)"; }
}

# ct_podman_compose: install podman-compose (pinned) into its own venv under .local/container/tools.
ct_podman_compose() {
  local venv=$CT_TOOLS/podman-compose-$CT_PODMAN_COMPOSE_VERSION
  if [[ ! -x $venv/bin/podman-compose ]]; then
    ct_log "installing podman-compose $CT_PODMAN_COMPOSE_VERSION into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2 || ct_die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet "podman-compose==$CT_PODMAN_COMPOSE_VERSION" >&2 || ct_die "pip install podman-compose failed"
  fi
  # shellcheck disable=SC2034  # the callers' (test-compose.sh)
  CT_COMPOSE=$venv/bin/podman-compose
}

# ct_base_image: the stand-in for python:3.11-slim. Debian bookworm's own Python is 3.11 as well; the
# rootfs is made once with debootstrap and kept as a tarball, so a wiped podman storage re-imports it in
# seconds instead of bootstrapping again.
ct_base_image() {
  if podman image exists "$CT_BASE_IMAGE" && podman image exists "$CT_BOOKWORM_IMAGE"; then return; fi
  if [[ ! -s $CT_BASE_TAR ]]; then
    local rootfs=$CT_STATE/rootfs.tmp
    ct_log "making the python:3.11-slim stand-in with debootstrap (once; cached in $CT_BASE_TAR)"
    rm -rf "$rootfs"
    # python-is-python3: the official image has `python`; the Dockerfile calls it by that name.
    timeout 600 debootstrap --variant=minbase \
      --include=python3,python3-venv,python-is-python3,ca-certificates,netbase \
      bookworm "$rootfs" "$CT_DEBIAN_MIRROR" >"$CT_STATE/debootstrap.log" 2>&1 \
      || { tail -n 20 "$CT_STATE/debootstrap.log" >&2; rm -rf "$rootfs"; ct_die "debootstrap failed (above)"; }
    # What the slim image does not carry either: downloaded packages, package lists, docs, locales.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -cf "$CT_BASE_TAR.tmp" . && mv "$CT_BASE_TAR.tmp" "$CT_BASE_TAR"
    rm -rf "$rootfs"
  fi
  ct_log "importing the stand-in base as $CT_BASE_IMAGE"
  podman import --quiet --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
    "$CT_BASE_TAR" "$CT_BASE_IMAGE" >/dev/null || ct_die "podman import of the stand-in base failed"
  podman tag "$CT_BASE_IMAGE" "$CT_BOOKWORM_IMAGE"
}

# ct_build TAG CONTEXT [CONTAINERFILE] [EXTRA BUILD ARGS...]: podman build the way this machine needs:
# no pull (no registry), Docker format (the OCI format drops HEALTHCHECK), the host network and the
# host's CA bundle and pip/apt configuration read-only for the RUN steps (outgoing TLS is re-signed
# here). The mounts exist only while RUN steps run; nothing of them ends up in the image.
ct_build() {
  local tag=$1 context=$2 file=${3:-$2/Dockerfile}
  shift 3 || shift $#
  # The bundle file only, not /etc/ssl/certs: package installs in a RUN step write beside it.
  local mounts=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  [[ -f /etc/pip.conf ]] && mounts+=(--volume /etc/pip.conf:/etc/pip.conf:ro)
  timeout "${CT_BUILD_TIMEOUT_S:-600}" podman build --pull=never --format docker --network host \
    "${CT_ULIMITS[@]}" "${mounts[@]}" --tag "$tag" --file "$file" "$@" "$context" >&2
}

# ct_wait SECONDS WHAT COMMAND...: poll COMMAND until it succeeds, at most SECONDS; fail naming WHAT.
ct_wait() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { ct_log "timed out after ${seconds}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# ct_free_port: a TCP port on 127.0.0.1 nothing listens on now.
ct_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
