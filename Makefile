# One tool set everywhere: the README, .ci/run and this file call the same commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: install run test lint format bench bench-cache bench-gpu bench-batching bench-precision bench-masks bench-thresholds bench-tracing bench-scores bench-security load soak docker-build docker-smoke compose-smoke proxy-check clean

$(BIN)/simscore: pyproject.toml clients/python/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ./clients/python -e '.[dev]'
	touch $@

install: $(BIN)/simscore  ## create .venv; install the server, its client package and dev extras

run: install  ## start the service on 127.0.0.1:$(PORT) (SIMSCORE_* settings apply)
	$(BIN)/simscore serve --port $(PORT)

test: install  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

lint: install  ## ruff (lint + format check), mypy --strict and the import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install  ## engine benchmark: service vs bare model and piq, metrics' share, compile, start-up, SSIM
	$(BIN)/python bench/engine.py

USERS ?= 2,4,8,16
DURATION ?= 60
SOAK_USERS ?= 16
PAIRS_PER_S ?= 2.05  # about 80 % of the peak `make load` printed on the 2-core dev machine

load: install  ## locust sweep against a local server on loopback: results/load-*/
	$(BIN)/python load/run_load.py --users $(USERS) --duration-s $(DURATION)

soak: install  ## 10 minutes at PAIRS_PER_S with RSS checks: results/soak-*/
	$(BIN)/python load/run_load.py --soak --users $(SOAK_USERS) --pairs-per-s $(PAIRS_PER_S)

bench-cache: install  ## reference cache on/off: one golden image, many candidates
	$(BIN)/python bench/cache.py

bench-gpu: install  ## CUDA only; see docs/benchmarks.md (GPU)
	$(BIN)/python bench/gpu.py

bench-batching: install  ## pairs/s and latency per max_batch_size / max_wait_ms, through the app
	$(BIN)/python bench/batching.py

bench-precision: install  ## bf16 vs fp32 scores on real photographs (emulated bf16 is slow on CPUs without bf16 units)
	$(BIN)/python bench/precision.py --gram

bench-masks: install  ## what a region of interest costs: masked vs unmasked pairs
	$(BIN)/python bench/masks.py

bench-scores: install  ## lpips, dists and flip over HTTP vs their packages; ms_ssim vs pytorch_msssim (docs/benchmarks.md)
	$(BIN)/python bench/scores_http.py
	$(BIN)/python bench/lpips_dists.py
	$(BIN)/python bench/flip_http.py
	$(BIN)/python bench/flip_msssim.py

bench-thresholds: install  ## what each score does on the test photographs' distortions (docs/ci.md)
	$(BIN)/python bench/thresholds.py

bench-tracing: install  ## what tracing costs: every request traced and exported vs tracing off, side by side
	$(BIN)/python bench/tracing.py

bench-security: install  ## hostile clients against a real server, slowest admitted uploads, activation memory, CPU kernels (docs/security.md)
	$(BIN)/python bench/attacks.py
	$(BIN)/python bench/decode_bound.py
	$(BIN)/python bench/activations.py
	$(BIN)/python bench/kernels.py

docker-build:  ## build simscore:dev from a local base image (no registry needed)
	deploy/build-local.sh

docker-smoke:  ## build, run the image on CPU, check /compare against `simscore compare`
	deploy/smoke.sh

compose-smoke:  ## docker compose config (GPU, monitoring, CPU) + CPU `compose up --wait` + /compare
	deploy/compose-smoke.sh

proxy-check: install  ## nginx.conf in front of a real `simscore serve`: slow clients cut off, 413 before the app (~45 s, needs nginx)
	$(BIN)/python -m deploy.proxy_check

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache results
