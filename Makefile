# `make run`: set everything up and run Liveclass on its embedded defaults.
# `make test`: set everything up (PostgreSQL and Chromium from apt included) and run every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .stamps
export PIP_DISABLE_PIP_VERSION_CHECK := 1
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint check-system deps clean bench

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

# Debian packages the tests need: PostgreSQL and Redis (each started per test run in a
# temporary directory, never as a service), Chromium, Caddy and coturn (started by the
# deployment tests as plain processes), nftables and iproute2 (network namespaces), libnss3-tools
# (certutil: the HTTPS test trusts Caddy's internal CA in Chromium's NSS database).
$(STAMPS)/system:
	@mkdir -p $(STAMPS)
	@if ! command -v chromium >/dev/null || ! command -v redis-server >/dev/null \
	    || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v caddy >/dev/null \
	    || ! command -v turnserver >/dev/null || ! command -v nft >/dev/null || ! command -v ip >/dev/null \
	    || ! command -v certutil >/dev/null; then \
	  echo "installing chromium, postgresql, redis-server, caddy, coturn, nftables, iproute2 and libnss3-tools from apt"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends \
	    chromium postgresql redis-server fonts-dejavu-core caddy coturn nftables iproute2 libnss3-tools; \
	  $(SUDO) systemctl disable --now caddy coturn >/dev/null 2>&1 || true; \
	fi
	@touch $@

# The load generator of bench/enroll_load.py.
$(STAMPS)/bench-tools:
	@mkdir -p $(STAMPS)
	@command -v wrk >/dev/null || { echo "installing wrk from apt"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q wrk; }
	@touch $@

# Browser bundles (esbuild): node_modules from the lock file, then frontend/*.js -> the pages' static build dir.
$(STAMPS)/frontend: package.json $(wildcard package-lock.json) $(wildcard frontend/*)
	@mkdir -p $(STAMPS)
	@command -v npm >/dev/null || { echo "installing nodejs and npm from apt"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q nodejs npm; }
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
	npm run build
	@touch $@

deps: $(STAMPS)/venv

run: $(STAMPS)/venv $(STAMPS)/frontend
	DEBUG=$${DEBUG:-1} $(BIN)/liveclass run

lint: $(STAMPS)/venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	DEBUG=1 $(BIN)/mypy src

test: $(STAMPS)/venv $(STAMPS)/system $(STAMPS)/frontend
	$(MAKE) lint
	$(BIN)/python tests/run.py sqlite
	# Once is enough for tests/media (no database), tests/deploy (its own SQLite), tests/network (namespaces, not SQL)
	# and tests/faults (servers of its own, its own PostgreSQL included).
	$(BIN)/python tests/run.py postgres --ignore=tests/media --ignore=tests/network --ignore=tests/deploy --ignore=tests/faults

bench: $(STAMPS)/venv $(STAMPS)/system $(STAMPS)/bench-tools
	$(BIN)/python bench/enroll_load.py

clean:
	rm -rf $(STAMPS) $(VENV) var
