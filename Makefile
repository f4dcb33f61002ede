# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench homeservers-down clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## run: GuestGate with the local homeserver pair, a Celery worker and beat (Ctrl-C stops all)
run: $(STAMP)
	GUESTGATE_DEBUG=true $(PY) -m devtools devstack

## test: the whole suite, against the real local homeserver pair
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## lint: ruff (lint and format), mypy and the import contracts (pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	GUESTGATE_DEBUG=true $(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## bench: guest flow, burst, expiry sweep, lobby load against the bare homeserver calls
##   (own ports 48xxx, var/bench-state); e.g. BENCH_ARGS="--only burst --burst-guests 500"
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## homeservers-down: stop the dev homeserver pair if `make run` was killed uncleanly
homeservers-down: $(STAMP)
	GUESTGATE_DEBUG=true $(PY) -m devtools homeservers down

clean: homeservers-down
	rm -rf var
