# `make run` starts the service on the embedded default; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export TF_CPP_MIN_LOG_LEVEL ?= 2
# The tests need PostgreSQL and Redis; these are the local defaults (see README).
export KIDNEY_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/kidney
export KIDNEY_TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test lint format compose-check bench

$(BIN)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap_model
	@echo "Demo API token (role clinician): $$($(BIN)/python manage.py create_api_user demo --role clinician 2>/dev/null | tail -n 1)"
	$(BIN)/python manage.py runstack --port $(PORT)

# Sets up what the tests need (PostgreSQL, Redis, Chromium) where it can, says what it cannot.
test: install
	@tests/setup.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Validation only: the file insists on a real DJANGO_SECRET_KEY when it is deployed.
compose-check: export DJANGO_SECRET_KEY ?= placeholder-for-validation-only
compose-check:
	@if docker compose version >/dev/null 2>&1; then docker compose config --quiet; \
	else docker-compose config --quiet; fi
	@echo "docker-compose.yml is valid"

bench: install
	$(BIN)/python bench/inference.py $(BENCH_ARGS)
