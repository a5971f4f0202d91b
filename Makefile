# fleet-agent — the two commands: `make demo` and `make test` (fresh Debian 12, as root).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP_APT_DEMO := $(VENV)/.apt-demo
STAMP_APT_TEST := $(VENV)/.apt-test
STAMP_PIP := $(VENV)/.pip-installed

# Debian packages: what the demo needs, and what the tests add (real PostgreSQL + PostGIS,
# headless Chromium for the map test, systemd headers for systemd-python, qemu for the VM rig,
# the .deb's build tools: the packaging and install tests build it; qemu-user-static for the
# arm64 chroot that builds and tests the Raspberry Pi package; pgbouncer for the pooling test,
# patroni and etcd-server for the failover test; reprepro and gnupg for the signed apt repository).
APT_DEMO := python3 python3-venv python3-dev gcc
APT_TEST := $(APT_DEMO) postgresql-15 postgresql-15-postgis-3 chromium libsystemd-dev \
	pkg-config iproute2 mosquitto systemd debootstrap qemu-system-x86 can-utils \
	build-essential dpkg-dev debhelper dh-virtualenv cmake postgresql-server-dev-15 \
	qemu-user-static nats-server pgbouncer patroni etcd-server reprepro gnupg

# TimescaleDB for the hypertable tests and benchmark: Debian has no package, so it is built from
# the Apache-2.0 source in ../shared/vendor/ when that exists (about 15 s). Elsewhere install it
# from Timescale's own packages (docs/persistence.md); the Timescale tests fail until it is there.
PG_BINDIR := /usr/lib/postgresql/15/bin
# (../shared/vendor/ next to this checkout, or next to the main checkout for a git worktree)
TSDB_VENDOR := ../shared/vendor $(shell git rev-parse --path-format=absolute \
	--git-common-dir 2>/dev/null)/../../shared/vendor
TSDB_TARBALL := $(firstword $(wildcard $(addsuffix /timescaledb-*-apache.tar.gz,$(TSDB_VENDOR))))

# The web app (web/): bundled by esbuild into backend/static/app/, which the backend serves and
# the .deb ships. Rebuilt when its sources change; Node.js and npm as installed, else Debian's.
WEB_BUNDLE := backend/static/app/app.js
# the driver app's copy for the in-cab tablet, served by the agent (web/build.mjs makes both)
CAB_BUNDLE := agent/cab_static/driver.js
WEB_SOURCES := $(wildcard web/src/* web/src/track/*) web/package.json web/package-lock.json web/build.mjs

.PHONY: demo test bench hil lint check lock clean deb-arm64 deps-demo deps-test deps-web deps-node timescaledb web

define apt_install
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then \
			echo "installing Debian packages: $$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		fi; \
	else echo "not root or no apt-get: assuming these are installed: $(1)"; fi
endef

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# Python dependencies come from requirements/test.lock: every package pinned with its hashes
# (pip checks them), for Python 3.11 on x86_64 and aarch64; `make lock` regenerates the locks
# from pyproject.toml (hil/lock.py) and tests/integration/test_lock.py fails while they disagree. The
# project itself goes in last, without dependencies and with the lock's setuptools (no build
# isolation: that would fetch the build backend unpinned).
LOCK_TEST := requirements/test.lock

$(STAMP_PIP): pyproject.toml $(LOCK_TEST) | $(VENV)/bin/python
	$(PY) -m pip install -q --require-hashes -r $(LOCK_TEST)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

lock: $(STAMP_PIP)
	$(PY) -m hil.lock

deps-demo:
	$(call apt_install,$(APT_DEMO))

deps-test:
	$(call apt_install,$(APT_TEST))

deps-web:
	@if ! command -v npm >/dev/null; then $(MAKE) --no-print-directory deps-node; fi

deps-node:
	$(call apt_install,nodejs npm)

$(WEB_BUNDLE) $(CAB_BUNDLE) &: $(WEB_SOURCES) | deps-web
	cd web && npm ci --no-audit --no-fund && npm run build

web: $(WEB_BUNDLE) $(CAB_BUNDLE)

demo: deps-demo $(STAMP_PIP) $(WEB_BUNDLE)
	$(PY) -m hil.demo

timescaledb: deps-test
	@if [ -e "$$($(PG_BINDIR)/pg_config --sharedir)/extension/timescaledb.control" ]; then \
		echo "TimescaleDB is installed"; \
	elif [ -n "$(TSDB_TARBALL)" ] && [ "$$(id -u)" = 0 ]; then \
		echo "building TimescaleDB from $(TSDB_TARBALL)"; \
		build=$$(mktemp -d) && tar xzf "$(TSDB_TARBALL)" -C "$$build" && \
		cd "$$build"/timescaledb-* && \
		{ ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
			-DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF -DCMAKE_BUILD_TYPE=Release \
			-DPG_CONFIG=$(PG_BINDIR)/pg_config && \
		  $(MAKE) -C build -j2 && $(MAKE) -C build install; } >"$$build/log" 2>&1 || \
		{ tail -30 "$$build/log"; exit 1; }; \
		rm -rf "$$build" && echo "TimescaleDB installed"; \
	else \
		echo "TimescaleDB is not installed and ../shared/vendor/ has no source (or not root):"; \
		echo ""; \
		echo "install it from Timescale's packages (docs/persistence.md); its tests will fail."; \
	fi

# The suite on every core (pytest-xdist): the serial groups of tests/conftest.py (the VM, the
# arm64 chroot, network namespaces) run one group per worker, one test at a time, and first;
# the rest fill the other workers (tests/conftest.py schedules them, whatever --dist says).
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: deps-test timescaledb $(STAMP_PIP) $(WEB_BUNDLE)
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist load --no-loadscope-reorder $(PYTEST_ARGS)

# the HIL scenarios for users (hil/scenarios.py, docs/hil.md), full length: a drive, 2- and
# 15-minute tunnels, 20 handovers (NAT rebinding; between uplinks in namespaces, root), kill -9
# of the agent at random, reboots, 20 power cuts and a full disk (root: it mounts a tmpfs);
# each prints its report. `make test` runs reduced versions.
hil: deps-demo $(STAMP_PIP) $(WEB_BUNDLE)
	$(PY) -m hil drive
	$(PY) -m hil tunnel --blackout-s 120
	$(PY) -m hil tunnel --blackout-s 900
	$(PY) -m hil handover --handovers 20
	$(PY) -m hil handover --netns --handovers 20
	$(PY) -m hil crash --crashes 10
	$(PY) -m hil reboot --reboots 5
	$(PY) -m hil power-cut --cuts 20
	$(PY) -m hil disk-full --full-s 60

# the Raspberry Pi package (hil/chroot.py: cross-built, its virtualenv made in an arm64 chroot)
deb-arm64: deps-test $(STAMP_PIP) $(WEB_BUNDLE)
	$(PY) -m hil.chroot deb arm64

bench: deps-test timescaledb $(STAMP_PIP) $(WEB_BUNDLE)
	$(PY) -m bench

lint: $(STAMP_PIP)
	$(PY) -m ruff check agent backend geostream hil loadtest tests bench
	$(PY) -m mypy

# The unit tests of the pure cores (tests/unit/, mirroring the source tree): no apt, no
# network, no root, no PostgreSQL, no browser.
UNIT_TESTS := tests/unit

# The gate to run before every commit: lint, type check, the unit tests (about 25 s of CPU).
check: lint
	$(PY) -m pytest $(UNIT_TESTS) -q -p no:cacheprovider \
		-m "not postgres and not browser and not netns and not slow"

clean:
	rm -rf $(VENV) run .pytest_cache .hypothesis backend/static/app backend/static/track web/node_modules
