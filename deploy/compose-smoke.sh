#!/usr/bin/env bash
# Compose smoke test on a host without a GPU or an image registry:
#   1. `docker compose config` for every file combination (GPU file, CPU override, each with
#      and without the monitoring profile);
#   2. images from deploy/build-local.sh: simscore ($IMAGE) and, for the proxy, the Debian
#      stand-in ($NGINX_IMAGE) in place of the official nginx image (SKIP_BUILD=1 reuses both);
#   3. `up --wait` of docker-compose.yml + docker-compose.cpu.yml with seeded weights;
#   4. through the published proxy port: /compare scores against `simscore compare` on the host,
#      X-Request-ID, a 413 before the body, /metrics hidden; /metrics served inside;
#   5. the compile cache volume writable by the app's user;
#   6. `stop`: the proxy stops first, then simscore drains and exits 0; always `down -v`.
# Prometheus and Grafana images are not pulled (no registry here).
#
#   deploy/compose-smoke.sh              # make compose-smoke
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DOCKER="${DOCKER:-/usr/bin/docker}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# The shared test helpers import FastAPI's test client, which warns on import; not ours.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:Using \`httpx\` with \`starlette.testclient\`}"
export IMAGE="${IMAGE:-simscore:dev}"
export PROXY_IMAGE="${PROXY_IMAGE:-local/nginx-standin:bookworm}"
SEED="${SEED:-1234}"
project="simscore-smoke-$$"

log() { printf '[compose-smoke] %s\n' "$*" >&2; }

cd "$ROOT"
work="$(mktemp -d)"
export SIMSCORE_IMAGE="$IMAGE" NGINX_IMAGE="$PROXY_IMAGE" SIMSCORE_WEIGHTS_DIR="$work/weights"
SIMSCORE_PUBLISH="127.0.0.1:$("$PYTHON" -m deploy.smoke_check free-port)"
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

log "docker compose config: every file combination, with and without monitoring"
for files in "-f docker-compose.yml" "-f docker-compose.yml -f docker-compose.cpu.yml"; do
    for profile in "" "--profile monitoring"; do
        # shellcheck disable=SC2086 # word splitting of the option lists is intended
        "$DOCKER" compose $files $profile config --quiet
    done
done

if [[ "${SKIP_BUILD:-0}" != "1" ]]; then
    FETCH_WEIGHTS=0 "$ROOT/deploy/build-local.sh" all
fi

mkdir -p "$work/weights"
"$PYTHON" -m app.cli make-random-weights --out "$work/weights/vgg19.pth" --seed "$SEED" > /dev/null
chmod 0755 "$work/weights"
chmod 0644 "$work/weights/vgg19.pth"
"$PYTHON" -m deploy.smoke_check photos "$work/photos"

log "docker compose up --wait (CPU override): proxy on $SIMSCORE_PUBLISH"
started=$SECONDS
"${compose[@]}" up --detach --no-build --wait --wait-timeout 240 simscore proxy
log "simscore healthy (ready) and the proxy up after $((SECONDS - started)) s"

url="http://$SIMSCORE_PUBLISH"
SIMSCORE_WEIGHTS="$work/weights/vgg19.pth" SIMSCORE_DEVICE=cpu \
    "$PYTHON" -m deploy.smoke_check compare "$url" "$work/photos" --no-metrics
"$PYTHON" -m deploy.smoke_check proxy "$url"

log "inside: /metrics served to Prometheus' network, compile cache writable"
"${compose[@]}" exec -T simscore python -c '
import os, pathlib, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=5).read().decode()
assert "simscore_requests_total" in text, "no simscore_* metrics"
cache = pathlib.Path(os.environ["SIMSCORE_COMPILE_CACHE_DIR"])
cache.mkdir(parents=True, exist_ok=True)
(cache / ".probe").write_text("ok")
(cache / ".probe").unlink()
print(f"/metrics served inside; {cache} writable by uid {os.getuid()}")
'

log "docker compose stop: the proxy first (SIGQUIT), then simscore drains (SIGTERM)"
started=$SECONDS
"${compose[@]}" stop
log "stopped in $((SECONDS - started)) s"
for service in simscore proxy; do
    code="$("$DOCKER" inspect --format '{{.State.ExitCode}}' "$("${compose[@]}" ps -a -q "$service")")"
    log "$service exit code $code"
    [[ "$code" == "0" ]] || exit 1
done
