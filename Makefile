# One command set for people, CI and hooks.
VENV ?= .venv
PY := $(VENV)/bin/python
# Coverage of the packages ([tool.coverage] in pyproject.toml); `make test COVERAGE=` skips it.
COVERAGE ?= --cov --cov-report=term:skip-covered

.PHONY: setup run stop test lint bench soak clean lock

setup:
	@bash scripts/bootstrap.sh

run: setup
	@REDIS_URL=$$(bash scripts/ensure-redis.sh) && export REDIS_URL && $(PY) scripts/run.py

test: setup
	$(PY) -m pytest $(COVERAGE) $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: setup
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# An hour's office day for 5,000 users, memory sampled (not CI; docs/BENCHMARKS.md, "Soak").
# `make soak SOAK_ARGS="--minutes 3 --users 500"` for a quick look.
soak: setup
	$(PY) bench/soak_office_day.py $(SOAK_ARGS)

# Stops this checkout's `make run` and its private Redis.
stop:
	@bash scripts/stop.sh

# Regenerates requirements.lock and requirements-dev.lock from pyproject.toml (docs/deploy.md).
lock:
	@bash scripts/lock.sh

clean: stop
	rm -rf .run $(VENV) build *.egg-info
