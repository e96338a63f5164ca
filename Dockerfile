# simscore: one VGG19 model copy per container (per GPU), served on port 8000.
#
# Production (pulls python:3.11-slim-bookworm, the CUDA 12.8 build of torch from the PyTorch
# wheel index, and bakes the ImageNet VGG19 weights into the image):
#   docker build -t simscore .
# Another torch build (docs/deploy.md has the index -> minimum driver table):
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130 -t simscore .
# Weights mounted at run time instead of baked in:
#   docker build --build-arg FETCH_WEIGHTS=0 -t simscore .
#   docker run -v /srv/vgg19.pth:/opt/simscore/weights/vgg19.pth:ro simscore
# Behind a TLS-intercepting proxy, hand pip its CA bundle (it never lands in a layer):
#   docker build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt -t simscore .
# Offline torch: --build-arg WHEELS_IMAGE=<image holding torch/torchvision wheels at />,
# see deploy/build-local.sh. docs/deploy.md has the details.

ARG BASE_IMAGE=python:3.11-slim-bookworm
# An image whose root holds torch, torchvision and their dependencies as wheels; `scratch`
# (empty) means "take them from TORCH_INDEX_URL".
ARG WHEELS_IMAGE=scratch

FROM ${WHEELS_IMAGE} AS wheels

# --- requirements: the third-party dependency list, alone -----------------------------------
# Read from both pyproject.toml files here, so edits elsewhere in them (versions, tool settings)
# leave the requirement file, and so the large dependency layer below, unchanged and cached.
FROM ${BASE_IMAGE} AS requirements

COPY deploy/docker/split_requirements.py /src/split_requirements.py
COPY pyproject.toml /src/pyproject.toml
COPY clients/python/pyproject.toml /src/clients/python/pyproject.toml
RUN python3 /src/split_requirements.py /src/pyproject.toml /src/clients/python/pyproject.toml \
        /requirements

# --- deps: a virtual environment with the project's dependencies (the big, stable layer) ---
FROM ${BASE_IMAGE} AS deps

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch decides which NVIDIA drivers the image runs on: each index holds builds for one CUDA
# version (cu126, cu128: driver R525+ through CUDA minor-version compatibility, R570+ for
# Blackwell; cu130, which is also what plain PyPI serves for 2.14: R580+). Pinned, and
# pyproject's ranges must admit the pins (pip checks that when the project wheel goes in).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1

# torch and torchvision come from the wheel image when it has any wheels, else from
# TORCH_INDEX_URL (with their dependencies: that index mirrors them). PIP_CERT is set only when
# the pip_ca secret was passed.
COPY --from=requirements /requirements /requirements
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    if ls /wheels/*.whl > /dev/null 2>&1; then \
        pip install --no-index --find-links /wheels \
            "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"; \
    else \
        pip install --index-url "$TORCH_INDEX_URL" \
            "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"; \
    fi; \
    pip install -r /requirements/rest.txt "setuptools>=68"

# --- builder: the client and the server as wheels, built offline against those deps -------
FROM deps AS builder

COPY clients/python /src/clients/python
COPY pyproject.toml README.md /src/
COPY app /src/app
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist /src/clients/python /src

# --- runtime: the venv, a compiler for torch.compile, a non-root user, optionally weights ---
FROM ${BASE_IMAGE} AS runtime

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# torch.compile (SIMSCORE_COMPILE, on by default with bf16/fp16) builds code at run time with
# the system compiler: Triton's CUDA launcher needs a C compiler and Python.h, inductor's CPU
# backend a C++ compiler. Without them compilation fails at warm-up. Debian's python3 keeps
# Python.h in python3-dev; the python:3.x images ship it.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && if ! python3 -c 'import pathlib, sys, sysconfig; sys.exit(not pathlib.Path(sysconfig.get_paths()["include"], "Python.h").exists())'; then \
        apt-get install -y --no-install-recommends python3-dev; \
    fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["include"], "Python.h").resolve(strict=True)'

# Writable paths on a read-only root: /tmp (a tmpfs or emptyDir: uploads, torch hub, the CUDA
# JIT cache) and /var/cache/simscore (a volume: compiled kernels that must survive restarts).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/simscore \
    TORCH_HOME=/tmp/torch \
    XDG_CACHE_HOME=/tmp/.cache \
    CUDA_CACHE_PATH=/tmp/cuda-cache \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
    SIMSCORE_COMPILE_CACHE_DIR=/var/cache/simscore/inductor \
    TORCHINDUCTOR_CACHE_DIR=/var/cache/simscore/inductor \
    TRITON_CACHE_DIR=/var/cache/simscore/triton \
    SIMSCORE_HOST=0.0.0.0 \
    SIMSCORE_PORT=8000 \
    SIMSCORE_WEIGHTS=/opt/simscore/weights/vgg19.pth

# /var/cache/simscore belongs to the user, so a fresh named volume mounted there (Docker copies
# the directory's owner into it) or an emptyDir with fsGroup is writable.
RUN groupadd --system --gid 10001 simscore \
    && useradd --system --uid 10001 --gid simscore --home-dir /home/simscore --create-home \
        --shell /usr/sbin/nologin simscore \
    && mkdir -p /opt/simscore/weights /var/cache/simscore \
    && chown simscore:simscore /var/cache/simscore

# Two layers: the dependencies (unchanged by code edits, so cached and shared) and the two
# project wheels on top (small). No index: every dependency must already be in the venv, and
# pip checks the server's requirements (torch range, simscore-client==...) against it.
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    PIP_DISABLE_PIP_VERSION_CHECK=1 pip install --no-cache-dir --no-index --find-links /dist \
        /dist/*.whl \
    && pip check \
    && simscore --help > /dev/null

# 1 bakes torchvision's ImageNet VGG19 weights into the image (needs download.pytorch.org);
# 0 expects a state_dict mounted at $SIMSCORE_WEIGHTS (or SIMSCORE_WEIGHTS pointed elsewhere).
ARG FETCH_WEIGHTS=1
# The hub download goes to a throw-away TORCH_HOME; only the features-only state_dict
# (and its sha256, for SIMSCORE_WEIGHTS_SHA256) stays in the layer.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ "$FETCH_WEIGHTS" = "1" ]; then \
        if [ -s /run/secrets/pip_ca ]; then export SSL_CERT_FILE=/run/secrets/pip_ca; fi; \
        TORCH_HOME=/tmp/fetch simscore fetch-weights --out "$SIMSCORE_WEIGHTS"; \
        sha256sum "$SIMSCORE_WEIGHTS" | cut -d' ' -f1 > "$SIMSCORE_WEIGHTS.sha256"; \
        rm -rf /tmp/fetch; \
    elif [ "$FETCH_WEIGHTS" != "0" ]; then \
        echo "FETCH_WEIGHTS must be 0 or 1, got '$FETCH_WEIGHTS'" >&2; exit 2; \
    fi

USER 10001:10001
WORKDIR /home/simscore
EXPOSE 8000

# Liveness only; readiness (/readyz) is the orchestrator's business. The start period
# covers weight loading and warm-up on a cold CPU. app.probe (standard library only) takes the
# connection cap's 503 for a busy server, not a dead one.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "app.probe", "/healthz"]

ENTRYPOINT ["simscore"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
