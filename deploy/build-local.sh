#!/usr/bin/env bash
# Build the simscore image on a machine without an image registry (this repository's
# development machines, air-gapped build hosts):
#   - base: $BASE_IMAGE, else the newest local/bookworm-python:* image, else one made here
#     with debootstrap (Debian bookworm's python3 is 3.11, like python:3.11-slim-bookworm);
#   - torch: $WHEELS_IMAGE, else local/simscore-wheels:<versions>, an image holding the
#     torch/torchvision wheels (and their dependencies) that the host venv has, made here with
#     `pip download` (which copies them from local files where pip has them);
#     WHEELS_IMAGE=scratch takes torch from PyPI instead (the production path, ~3 GB);
#   - pip reaches PyPI for the rest, with the host's CA bundle as the `pip_ca` build secret.
# Idempotent: every step is skipped or cached when its result exists.
#
#   deploy/build-local.sh                  # -> simscore:dev, FETCH_WEIGHTS=0
#   IMAGE=simscore:x FETCH_WEIGHTS=1 deploy/build-local.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER="${DOCKER:-/usr/bin/docker}"   # Debian's client: BuildKit built in (RUN --mount, secrets)
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
IMAGE="${IMAGE:-simscore:dev}"
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
    local torch_version vision_version
    torch_version="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("torch"))')"
    vision_version="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("torchvision"))')"
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

ensure_base_image
ensure_wheels_image

build_args=(
    --build-arg "BASE_IMAGE=$BASE_IMAGE"
    --build-arg "WHEELS_IMAGE=$WHEELS_IMAGE"
    --build-arg "FETCH_WEIGHTS=$FETCH_WEIGHTS"
    --tag "$IMAGE"
)
if [[ -r "$PIP_CA" ]]; then
    build_args+=(--secret "id=pip_ca,src=$PIP_CA")
fi

log "building $IMAGE (base $BASE_IMAGE, wheels $WHEELS_IMAGE, FETCH_WEIGHTS=$FETCH_WEIGHTS)"
started=$SECONDS
"$DOCKER" build --progress=plain "${build_args[@]}" "$ROOT" > "${BUILD_LOG:-/tmp/simscore-build.log}" 2>&1 || {
    tail -n 40 "${BUILD_LOG:-/tmp/simscore-build.log}" >&2
    log "build failed; full log in ${BUILD_LOG:-/tmp/simscore-build.log}"
    exit 1
}
size_bytes="$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")"
log "built $IMAGE in $((SECONDS - started)) s, $((size_bytes / 1000000)) MB"
