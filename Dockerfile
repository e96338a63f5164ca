# simscore: one VGG19 model copy per container (per GPU), served on port 8000.
#
# Production (pulls python:3.11-slim-bookworm and the CUDA build of torch from PyPI,
# bakes the ImageNet VGG19 weights into the image):
#   docker build -t simscore .
# Weights mounted at run time instead of baked in:
#   docker build --build-arg FETCH_WEIGHTS=0 -t simscore .
#   docker run -v /srv/vgg19.pth:/opt/simscore/weights/vgg19.pth:ro simscore
# Behind a TLS-intercepting proxy, hand pip its CA bundle (it never lands in a layer):
#   docker build --secret id=pip_ca,src=/etc/ssl/certs/ca-certificates.crt -t simscore .
# Offline torch: --build-arg WHEELS_IMAGE=<image holding torch/torchvision wheels at />,
# see deploy/smoke.sh. docs/deploy.md has the details.

ARG BASE_IMAGE=python:3.11-slim-bookworm
# An image whose root holds torch, torchvision and their dependencies as wheels; `scratch`
# (empty) means "take them from PyPI".
ARG WHEELS_IMAGE=scratch

FROM ${WHEELS_IMAGE} AS wheels

# --- requirements: the dependency list, alone ----------------------------------------------
# Read from pyproject.toml here, so edits elsewhere in that file (version, tool settings) leave
# the requirement files, and so the large dependency layer below, unchanged and cached.
FROM ${BASE_IMAGE} AS requirements

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
COPY pyproject.toml /src/pyproject.toml
RUN mkdir /requirements \
    && python3 -c 'import tomllib; print(*tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > /tmp/all.txt \
    && grep -E '^torch(vision)?([^a-z_-]|$)' /tmp/all.txt > /requirements/torch.txt \
    && grep -vE '^torch(vision)?([^a-z_-]|$)' /tmp/all.txt > /requirements/rest.txt

# --- deps: a virtual environment with the project's dependencies (the big, stable layer) ---
FROM ${BASE_IMAGE} AS deps

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch and torchvision come from the wheel image when it has any wheels, else from PyPI
# (whose default linux x86_64 torch wheel is the CUDA build). PIP_CERT is set only when the
# pip_ca secret was passed.
COPY --from=requirements /requirements /requirements
RUN --mount=type=bind,from=wheels,target=/wheels \
    --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi; \
    if ls /wheels/*.whl > /dev/null 2>&1; then \
        pip install --no-index --find-links /wheels -r /requirements/torch.txt; \
    else \
        pip install -r /requirements/torch.txt; \
    fi; \
    pip install -r /requirements/rest.txt "setuptools>=68"

# --- builder: the project as a wheel, built offline against those dependencies ----------
FROM deps AS builder

COPY pyproject.toml README.md /src/
COPY app /src/app
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist /src

# --- runtime: the venv, a non-root user, optionally the weights --------------------------
FROM ${BASE_IMAGE} AS runtime

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/simscore \
    TORCH_HOME=/tmp/torch \
    XDG_CACHE_HOME=/tmp/.cache \
    SIMSCORE_HOST=0.0.0.0 \
    SIMSCORE_PORT=8000 \
    SIMSCORE_WEIGHTS=/opt/simscore/weights/vgg19.pth

RUN groupadd --system --gid 10001 simscore \
    && useradd --system --uid 10001 --gid simscore --home-dir /home/simscore --create-home \
        --shell /usr/sbin/nologin simscore \
    && mkdir -p /opt/simscore/weights

# Two layers: the dependencies (unchanged by code edits, so cached and shared) and the
# project wheel on top (small).
COPY --from=deps /opt/venv /opt/venv
RUN --mount=type=bind,from=builder,source=/dist,target=/dist \
    PIP_DISABLE_PIP_VERSION_CHECK=1 pip install --no-cache-dir --no-deps --no-index /dist/*.whl \
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
# covers weight loading and warm-up on a cold CPU.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

ENTRYPOINT ["simscore"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
