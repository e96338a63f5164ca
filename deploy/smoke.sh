#!/usr/bin/env bash
# Container smoke test, CPU only (no GPU, no registry needed):
#   1. build the image from a local base (deploy/build-local.sh; SKIP_BUILD=1 reuses $IMAGE);
#   2. write a seeded random VGG19 state_dict with `simscore make-random-weights`;
#   3. run the image on CPU as Kubernetes would (non-root, read-only root, no capabilities,
#      /tmp and the compile cache writable) with the weights mounted, on a random loopback port;
#   4. wait for /readyz, POST real photograph pairs to /compare and require the scores to
#      match `simscore compare --json` run on the host with the same weights (rel 1e-4);
#   5. check the compile cache volume is writable by the image's user, the image's HEALTHCHECK
#      turns healthy, and SIGTERM exits 0 within the drain;
#   6. always remove the container, its volume and the temporary files.
# Host-side Python runs from the repository root (`python -m deploy.smoke_check`, `python -m
# app.cli`), so it uses this checkout's code.
#
#   deploy/smoke.sh                      # make docker-smoke
#   BASE_IMAGE=local/bookworm-python:20261127 IMAGE=simscore:dev deploy/smoke.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOCKER="${DOCKER:-/usr/bin/docker}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# The shared test helpers import FastAPI's test client, which warns on import; not ours.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:Using \`httpx\` with \`starlette.testclient\`}"
export IMAGE="${IMAGE:-simscore:dev}"
READY_TIMEOUT_S="${READY_TIMEOUT_S:-180}"
SEED="${SEED:-1234}"

log() { printf '[smoke] %s\n' "$*" >&2; }

work="$(mktemp -d)"
container="simscore-smoke-$$"
cleanup() {
    status=$?
    if [[ $status -ne 0 ]] && "$DOCKER" inspect "$container" > /dev/null 2>&1; then
        log "container logs (last 40 lines):"
        "$DOCKER" logs --tail 40 "$container" >&2 || true
    fi
    "$DOCKER" rm -f --volumes "$container" > /dev/null 2>&1 || true
    rm -rf "$work"
    if [[ $status -eq 0 ]]; then log "PASS"; else log "FAIL"; fi
}
trap cleanup EXIT
cd "$ROOT"

if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
    FETCH_WEIGHTS=0 "$ROOT/deploy/build-local.sh"
fi

log "seeded weights (seed $SEED) and photograph pairs in $work"
"$PYTHON" -m app.cli make-random-weights --out "$work/vgg19.pth" --seed "$SEED" > /dev/null
chmod 0644 "$work/vgg19.pth"
"$PYTHON" -m deploy.smoke_check photos "$work/photos"

port="$("$PYTHON" -m deploy.smoke_check free-port)"
log "starting $IMAGE as $container on 127.0.0.1:$port"
"$DOCKER" run --detach --name "$container" \
    --publish "127.0.0.1:$port:8000" \
    --volume "$work/vgg19.pth:/weights/vgg19.pth:ro" \
    --env SIMSCORE_WEIGHTS=/weights/vgg19.pth \
    --env SIMSCORE_DEVICE=cpu \
    --env SIMSCORE_WARMUP_SIDES=224 \
    --read-only --tmpfs /tmp:size=512m \
    --mount type=volume,target=/var/cache/simscore \
    --cap-drop ALL --security-opt no-new-privileges:true \
    "$IMAGE" > /dev/null

uid="$("$DOCKER" exec "$container" id -u)"
[[ "$uid" != "0" ]] || { log "the container runs as root"; exit 1; }
log "runs as uid $uid"

"$PYTHON" -m deploy.smoke_check wait-ready "http://127.0.0.1:$port" "$READY_TIMEOUT_S" "$container"
SIMSCORE_WEIGHTS="$work/vgg19.pth" SIMSCORE_DEVICE=cpu \
    "$PYTHON" -m deploy.smoke_check compare "http://127.0.0.1:$port" "$work/photos"

# The compile cache: a fresh volume takes the image directory's owner, so the user can write.
"$DOCKER" exec "$container" python -c '
import os, pathlib
cache = pathlib.Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
cache.mkdir(parents=True, exist_ok=True)
(cache / ".probe").write_text("ok")
(cache / ".probe").unlink()
print(f"compile cache {cache} is writable by uid {os.getuid()}")
'

log "waiting for the image's HEALTHCHECK to report healthy"
health=""
for _ in $(seq 1 40); do
    health="$("$DOCKER" inspect --format '{{.State.Health.Status}}' "$container")"
    [[ "$health" == "healthy" ]] && break
    sleep 1
done
[[ "$health" == "healthy" ]] || { log "HEALTHCHECK status: $health"; exit 1; }
log "HEALTHCHECK: healthy"

log "SIGTERM (docker stop, 45 s grace)"
started=$SECONDS
"$DOCKER" stop --time 45 "$container" > /dev/null
exit_code="$("$DOCKER" inspect --format '{{.State.ExitCode}}' "$container")"
log "stopped in $((SECONDS - started)) s with exit code $exit_code"
[[ "$exit_code" == "0" ]] || exit 1
