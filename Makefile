# One tool set everywhere: the README, .ci/run and this file call the same commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: install run test lint format bench load soak docker-build docker-smoke compose-smoke clean

$(BIN)/simscore: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $@

install: $(BIN)/simscore  ## create .venv and install the project with its dev extras

run: install  ## start the service on 127.0.0.1:$(PORT) (SIMSCORE_* settings apply)
	$(BIN)/simscore serve --port $(PORT)

test: install  ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

lint: install  ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install  ## engine benchmark tables (not part of the tests)
	$(BIN)/python bench/engine.py

docker-build:  ## build simscore:dev from a local base image (no registry needed)
	deploy/build-local.sh

docker-smoke:  ## build, run the image on CPU, check /compare against `simscore compare`
	deploy/smoke.sh

compose-smoke:  ## docker compose config (GPU, monitoring, CPU) + CPU `compose up --wait` + /compare
	deploy/compose-smoke.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache results
