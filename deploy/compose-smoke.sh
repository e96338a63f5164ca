#!/usr/bin/env bash
# Compose smoke test on a host without a GPU: `docker compose config` for the GPU file, the
# CPU override and the monitoring profile, then `up --wait` of docker-compose.yml +
# docker-compose.cpu.yml with seeded weights in the weights volume, a /compare check against
# `simscore compare`, and `down`. The image comes from deploy/build-local.sh (SKIP_BUILD=1
# reuses $IMAGE). Prometheus and Grafana images are not pulled (no registry here).
#
#   deploy/compose-smoke.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOCKER="${DOCKER:-/usr/bin/docker}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export SIMSCORE_BIN="${SIMSCORE_BIN:-$ROOT/.venv/bin/simscore}"
export IMAGE="${IMAGE:-simscore:dev}"
SEED="${SEED:-1234}"
project="simscore-smoke-$$"

log() { printf '[compose-smoke] %s\n' "$*" >&2; }

work="$(mktemp -d)"
export SIMSCORE_IMAGE="$IMAGE" SIMSCORE_WEIGHTS_DIR="$work/weights"
SIMSCORE_PUBLISH="127.0.0.1:$("$PYTHON" "$ROOT/deploy/smoke_check.py" free-port)"
export SIMSCORE_PUBLISH
compose=("$DOCKER" compose --project-directory "$ROOT" -f "$ROOT/docker-compose.yml"
    -f "$ROOT/docker-compose.cpu.yml" -p "$project")
cleanup() {
    status=$?
    if [[ $status -ne 0 ]]; then
        "${compose[@]}" logs --tail 40 >&2 2> /dev/null || true
    fi
    "${compose[@]}" down --volumes --remove-orphans > /dev/null 2>&1 || true
    rm -rf "$work"
    if [[ $status -eq 0 ]]; then log "PASS"; else log "FAIL"; fi
}
trap cleanup EXIT

log "docker compose config: GPU file, CPU override, monitoring profile"
(cd "$ROOT" && "$DOCKER" compose -f docker-compose.yml config --quiet)
(cd "$ROOT" && "$DOCKER" compose -f docker-compose.yml --profile monitoring config --quiet)
(cd "$ROOT" && "$DOCKER" compose -f docker-compose.yml -f docker-compose.cpu.yml config --quiet)

if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
    FETCH_WEIGHTS=0 "$ROOT/deploy/build-local.sh"
fi

mkdir -p "$work/weights"
"$SIMSCORE_BIN" make-random-weights --out "$work/weights/vgg19.pth" --seed "$SEED" > /dev/null
chmod 0755 "$work/weights"
chmod 0644 "$work/weights/vgg19.pth"
"$PYTHON" "$ROOT/deploy/smoke_check.py" photos "$work/photos"

log "docker compose up --wait (CPU override) on $SIMSCORE_PUBLISH"
started=$SECONDS
"${compose[@]}" up --detach --no-build --wait --wait-timeout 240 simscore
log "healthy (ready) after $((SECONDS - started)) s"

SIMSCORE_WEIGHTS="$work/weights/vgg19.pth" SIMSCORE_DEVICE=cpu \
    "$PYTHON" "$ROOT/deploy/smoke_check.py" compare "http://$SIMSCORE_PUBLISH" "$work/photos"
