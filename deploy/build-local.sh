#!/usr/bin/env bash
# Build the simscore image, and the local stand-in for the nginx proxy, on a machine without an
# image registry (this repository's development machines, air-gapped build hosts):
#   - base: $BASE_IMAGE, else the newest local/bookworm-python:* image, else one made here
#     with debootstrap (Debian bookworm's python3 is 3.11, like python:3.11-slim-bookworm);
#   - torch: $WHEELS_IMAGE, else local/simscore-wheels:<versions>, an image holding the
#     torch/torchvision wheels (and their dependencies) that the host venv has, made here with
#     `pip download` (which copies them from local files where pip has them);
#     WHEELS_IMAGE=scratch takes torch from PyPI instead (the production path, ~3 GB);
#   - pip reaches PyPI for the rest, with the host's CA bundle as the `pip_ca` build secret;
#   - `proxy`: $PROXY_IMAGE (local/nginx-standin:bookworm), Debian's nginx on the same base, in
#     place of the official nginx image docker-compose.yml names (no registry to pull it from).
# Idempotent: every step is skipped or cached when its result exists.
#
#   deploy/build-local.sh                  # -> simscore:dev, FETCH_WEIGHTS=0
#   deploy/build-local.sh proxy            # -> local/nginx-standin:bookworm
#   deploy/build-local.sh all              # both
#   IMAGE=simscore:x FETCH_WEIGHTS=1 deploy/build-local.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER="${DOCKER:-/usr/bin/docker}"   # Debian's client: BuildKit built in (RUN --mount, secrets)
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
IMAGE="${IMAGE:-simscore:dev}"
PROXY_IMAGE="${PROXY_IMAGE:-local/nginx-standin:bookworm}"
WHAT="${1:-app}"
FETCH_WEIGHTS="${FETCH_WEIGHTS:-0}"
PIP_CA="${PIP_CA:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
WHEELHOUSE="${WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/simscore/wheelhouse}"
export DOCKER_BUILDKIT=1

log() { printf '[build-local] %s\n' "$*" >&2; }

ensure_base_image() {
    if [[ -n "${BASE_IMAGE:-}" ]]; then
        return
    fi
    BASE_IMAGE="$("$DOCKER" images local/bookworm-python --format '{{.Repository}}:{{.Tag}}' \
        | sort | tail -n 1)"
    if [[ -n "$BASE_IMAGE" ]]; then
        return
    fi
    command -v debootstrap > /dev/null || {
        log "no base image: set BASE_IMAGE, or install debootstrap to make one"
        exit 1
    }
    BASE_IMAGE="local/bookworm-python:$(date +%Y%m%d)"
    local mirror rootfs
    mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2> /dev/null \
        || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d)"
    log "making $BASE_IMAGE with debootstrap from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" "$mirror" > /dev/null
    tar -C "$rootfs" -c . | "$DOCKER" import - "$BASE_IMAGE" > /dev/null
    rm -rf "$rootfs"
}

ensure_wheels_image() {
    if [[ -n "${WHEELS_IMAGE:-}" ]]; then
        return
    fi
    WHEELS_IMAGE="local/simscore-wheels:torch-${torch_version//+/_}-torchvision-${vision_version//+/_}"
    if "$DOCKER" image inspect "$WHEELS_IMAGE" > /dev/null 2>&1; then
        return
    fi
    log "collecting torch==$torch_version torchvision==$vision_version wheels in $WHEELHOUSE"
    mkdir -p "$WHEELHOUSE"
    "$PYTHON" -m pip download --quiet --dest "$WHEELHOUSE" \
        "torch==$torch_version" "torchvision==$vision_version"
    log "importing them as $WHEELS_IMAGE"
    tar -C "$WHEELHOUSE" -c . | "$DOCKER" import - "$WHEELS_IMAGE" > /dev/null
}

# Run a build quietly; on failure show the end of its log.
build() {
    local image="$1" log_file="$2" started=$SECONDS size_bytes
    shift 2
    "$DOCKER" build --progress=plain --tag "$image" "$@" > "$log_file" 2>&1 || {
        tail -n 40 "$log_file" >&2
        log "build of $image failed; full log in $log_file"
        exit 1
    }
    size_bytes="$("$DOCKER" image inspect --format '{{.Size}}' "$image")"
    log "built $image in $((SECONDS - started)) s, $((size_bytes / 1000000)) MB"
}

build_app() {
    ensure_wheels_image
    local build_args=(
        --build-arg "BASE_IMAGE=$BASE_IMAGE"
        --build-arg "WHEELS_IMAGE=$WHEELS_IMAGE"
        --build-arg "TORCH_VERSION=$torch_version"
        --build-arg "TORCHVISION_VERSION=$vision_version"
        --build-arg "FETCH_WEIGHTS=$FETCH_WEIGHTS"
    )
    if [[ -r "$PIP_CA" ]]; then
        build_args+=(--secret "id=pip_ca,src=$PIP_CA")
    fi
    log "building $IMAGE (base $BASE_IMAGE, wheels $WHEELS_IMAGE, FETCH_WEIGHTS=$FETCH_WEIGHTS)"
    build "$IMAGE" "${BUILD_LOG:-/tmp/simscore-build.log}" "${build_args[@]}" "$ROOT"
}

build_proxy() {
    log "building $PROXY_IMAGE (Debian's nginx on $BASE_IMAGE)"
    build "$PROXY_IMAGE" "${PROXY_BUILD_LOG:-/tmp/simscore-proxy-build.log}" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --file "$ROOT/deploy/nginx/standin.Dockerfile" "$ROOT/deploy/nginx"
}

# The torch pins: the versions the host venv has, so the wheel image and the build agree.
torch_version="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("torch"))')"
vision_version="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("torchvision"))')"

ensure_base_image
case "$WHAT" in
    app) build_app ;;
    proxy) build_proxy ;;
    all) build_app && build_proxy ;;
    *) log "usage: $0 [app|proxy|all]"; exit 2 ;;
esac
