#!/usr/bin/env bash
# Wheels the device machine's image lacks for bench/gpu.py: the service's web stack (for the HTTP
# rows), piq and pytorch_msssim (baselines). One set per Python the device may run (3.11 or 3.12),
# so whichever it has finds its own; versions are this venv's. (torch, torchvision, numpy,
# Pillow, scipy and scikit-image come with the device image.)
#
#   bench/gpu_wheels.sh          # here, once: fills .whl/py311 and .whl/py312 (git-ignored via
#                                # .git/info/exclude), about 2 x 8 MB
#
# The one device call (carry [".whl"], timeout_s 330; the run stops its sections at 270 s):
#   py=$(python3 -c 'import sys; print("py%d%d" % sys.version_info[:2])');
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
#     .whl/$py/*.whl && export PYTHONPATH=/tmp/site:clients/python/src || exit 3;
#   nvidia-smi -L; PYTHONUNBUFFERED=1 python3 bench/gpu.py --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
PY=${PY:-.venv/bin/python}
WHEELS=(
  fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 opentelemetry-api==1.45.2
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
  annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
  uvicorn==0.54.0 click==8.5.1 h11==0.16.0 python-multipart==0.0.34 prometheus-client==0.26.0
  httpx==0.28.1 httpcore==1.0.9 anyio==4.16.0 idna==3.20 certifi==2026.10.19.post1
  swagger-ui-bundle==1.1.0 jinja2==3.1.6 markupsafe==3.0.4
  piq==0.8.0 pytorch-msssim==1.0.0
)
for version in 3.11 3.12; do
  target=".whl/py${version/./}"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$target" "${WHEELS[@]}"
  echo "$target: $(ls "$target" | wc -l) wheels, $(du -sh "$target" | cut -f1)"
done
