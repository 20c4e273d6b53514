#!/usr/bin/env bash
# A three-node OrdoDB cluster in containers (deploy/docker-compose.yml).
#
#   scripts/compose.sh up     build the binary and the image, start the
#                             cluster, wait until every node is healthy
#   scripts/compose.sh down   stop it and delete its volumes
#   scripts/compose.sh test   up, the end-to-end test (node/tests/compose.rs:
#                             kill, restart, network cut, heal), down
#   scripts/compose.sh image  build the image only
#
# Works as root on a fresh Debian machine: installs Debian's docker.io and
# docker-compose if missing and starts dockerd if no daemon answers. No image
# is pulled: ordo:local is the locally built `ordo` (the dev build, or
# ORDO_PROFILE=release) plus the shared libraries it links.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ordo-target}"
PROFILE="${ORDO_PROFILE:-dev}"
compose() { docker-compose -p ordo -f deploy/docker-compose.yml "$@"; }

ensure_docker() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "installing ${missing[*]} needs root" >&2; exit 1; }
    echo "installing ${missing[*]}..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  docker info >/dev/null 2>&1 && return 0
  [ "$(id -u)" -eq 0 ] || { echo "no docker daemon answers, and starting one needs root" >&2; exit 1; }
  echo "starting dockerd (log: /var/log/ordo-dockerd.log)..." >&2
  nohup dockerd >/var/log/ordo-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "dockerd did not start; see /var/log/ordo-dockerd.log" >&2
  exit 1
}

build_image() {
  ./scripts/deps.sh
  local dir=debug flag=()
  if [ "$PROFILE" = release ]; then dir=release; flag=(--release); fi
  cargo build --workspace --locked "${flag[@]}"
  local bin="$CARGO_TARGET_DIR/$dir/ordo" root=deploy/rootfs
  rm -rf "$root"
  mkdir -p "$root"
  # Debug sections are not needed to run; line tables stay in the build.
  strip --strip-debug -o "$root/ordo" "$bin"
  # The dynamic loader and every library ldd resolves, at the same paths.
  # Name lookup of the other nodes needs nothing more with glibc 2.34 or
  # later (Debian 12 has 2.36), where the DNS and files NSS modules are
  # part of libc; an older glibc would also need libnss_dns, which it
  # loads at run time and ldd does not list.
  for lib in $(ldd "$bin" | grep -o '/[^ )]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  docker build -q -t ordo:local deploy >/dev/null
  echo "image ordo:local: $(docker image inspect -f '{{.Size}}' ordo:local | awk '{printf "%.0f MB", $1/1e6}')" >&2
}

make_secret() {
  [ -s deploy/cluster_secret ] && return 0
  (umask 077 && head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >deploy/cluster_secret)
}

wait_healthy() {
  local start=$SECONDS
  for _ in $(seq 1 180); do
    local healthy=0
    for n in ordo1 ordo2 ordo3; do
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$n" 2>/dev/null)" = healthy ] && healthy=$((healthy + 1))
    done
    if [ "$healthy" -eq 3 ]; then
      echo "all 3 nodes healthy after $((SECONDS - start)) s: http://localhost:8080 8081 8082" >&2
      return 0
    fi
    sleep 1
  done
  compose ps >&2
  compose logs --tail 50 >&2
  echo "the cluster did not become healthy" >&2
  exit 1
}

up() {
  ensure_docker
  build_image
  make_secret
  compose up -d
  wait_healthy
}

down() {
  ensure_docker
  compose down -v --remove-orphans
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  image) ensure_docker; build_image ;;
  test)
    # From a fresh cluster, and whatever happens, none left behind.
    ensure_docker
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    trap 'rc=$?; [ "$rc" -eq 0 ] || compose logs --tail 40 >&2 || true; compose down -v --remove-orphans' EXIT
    up
    ORDO_COMPOSE_TEST=1 cargo test --workspace --locked --test compose -- --nocapture
    ;;
  *) echo "usage: $0 up|down|test|image" >&2; exit 2 ;;
esac
