#!/usr/bin/env bash
# Wheels that the device machine's image lacks for bench/gpu.py (its Python is 3.12): the web
# stack for the HTTP run, piq and pytorch_msssim for the baselines. Versions are this venv's.
#
#   bench/gpu_wheels.sh          # here, once: fills .whl/ (ignored through .git/info/exclude)
#
# then one device call, carry=[".whl"], timeout_s=420:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit;
#   nvidia-smi; PYTHONUNBUFFERED=1 python3 bench/gpu.py --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
PY=${PY:-.venv/bin/python}
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2 annotated-doc==0.0.7 \
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
  annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0 \
  uvicorn==0.54.0 python-multipart==0.0.34 piq==0.8.0 pytorch-msssim==1.0.0
du -sh .whl
