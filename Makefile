# Thin wrappers around uv. The two commands a newcomer needs:
#   make demo   install, start a proxy database (yours via DATABASE_URL, or an embedded one with
#               simulated traffic) and run the whole pipeline once
#   make test   install and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")

.PHONY: install demo test test-fast lint fmt run ui docs bench clean

install:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen --compile-bytecode

demo: install
	$(UV) run spendwh demo

# One pytest worker per core (pytest-xdist), each taking the next test when it is free: the long
# tests (a deployed daemon's schedule, Spark, the benchmark) spend much of their time waiting.
test: install
	$(UV) run pytest -n auto --dist worksteal

test-fast: install
	$(UV) run pytest -m "not integration and not slow and not browser"

lint: install
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	cd dbt && $(UV) run sqlfluff lint models

fmt: install
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

run: install
	$(UV) run spendwh run

ui: install
	$(UV) run spendwh ui

docs: install
	$(UV) run spendwh docs

bench: install
	$(UV) run python -m bench

clean:
	rm -rf data dbt/target dbt/logs .pytest_cache
