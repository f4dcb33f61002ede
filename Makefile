# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The front end (Element Call's embedded build and the lobby's call host): built into build/
# when npm exists; without it GuestGate runs with the call as a link (GUESTGATE_CALL_MODE).
FRONTEND := build/.built

.PHONY: run test lint format bench homeservers-down clean frontend

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(MAKE) --no-print-directory $(FRONTEND)
	touch $(STAMP)

$(FRONTEND): package.json package-lock.json frontend/build.mjs frontend/call-host.js frontend/call-crypto.js
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --no-audit --no-fund --loglevel=error && npm run --silent build && \
		$(PY) -m whitenoise.compress --quiet build && touch $(FRONTEND); \
	else \
		echo "npm is not installed: the call opens as a link (GUESTGATE_CALL_MODE=link)."; \
		echo "For Element Call embedded in the lobby, install Node.js 20 and npm, then: make frontend"; \
	fi

## frontend: (re)build Element Call's embedded build and the lobby's call host into build/
frontend: $(STAMP) $(FRONTEND)

## run: GuestGate with the local homeserver pair, a Celery worker and beat (Ctrl-C stops all);
## logs go to var/log/, or show here with `make run VERBOSE=1`
run: $(STAMP) $(FRONTEND)
	GUESTGATE_DEBUG=true $(PY) -m devtools devstack $(if $(VERBOSE),--verbose)

## test: the whole suite, against the real local homeserver pair
test: $(STAMP) $(FRONTEND)
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
