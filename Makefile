# zoneproof: `make e2e` runs the suites on a local multi-zone cluster; `make test` runs
# the project's own tests. Both install what they need on first use.

UV_VERSION := 0.13.9
CACHE_DIR  ?= $(or $(ZONEPROOF_CACHE_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/zoneproof)
UV_HOME    := $(CACHE_DIR)/uv-$(UV_VERSION)
UV         := $(UV_HOME)/bin/uv
VENV       := .venv
PY         := $(VENV)/bin/python
ZP         := $(VENV)/bin/zoneproof
PYTEST_ARGS ?=
# The packaging test builds and installs a wheel with the same pinned uv.
export ZONEPROOF_UV := $(UV)
# Live log lines show what a test is waiting for while it waits.
PYTEST_LOG  := -o log_cli=true --log-cli-level=INFO

# A pytest run that collected nothing (exit 5) is a failure, never a silent pass.
define run_pytest
	$(PY) -m pytest $(PYTEST_LOG) $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests in $(1)" >&2; exit 1; fi; exit $$rc
endef

.PHONY: help setup tools kind-prereqs report-prereqs browser-prereqs report test unit e2e cluster-up cluster-down cluster-status bench bench-chaos bench-ecs-connect bench-scale bench-kind soak mutants clean

help:
	@echo "make e2e          local cluster + suites + report (reports/); E2E_WORKERS=n workers,\n                 PROVIDER=kind for the kind cluster"
	@echo "make test         the project's own tests (unit + real local clusters)"
	@echo "make unit         the tests that need no cluster, Go build, wheel, browser or driver process (about half a minute)"
	@echo "make tools        build the Go tools into $(CACHE_DIR)/tools (no-op when cached)"
	@echo "make cluster-up   start the default local cluster; cluster-down stops it"
	@echo "make bench        bring-up and failure-detection benchmark"
	@echo "make bench-chaos  recovery time of each chaos experiment and the chaos set's wall time"
	@echo "make bench-ecs-connect  fake ECS under bursts of 32 connecting clients, and a client's calls beside 200/1000 idle ones"
	@echo "make bench-scale  3 zones × 100 nodes, 300 replicas: provisioning, scheduling and oracle time at 30/100/300"
	@echo "make soak         the full e2e RUNS=10 times back to back: flaky tests and leaks per run"
	@echo "make bench-kind   kind next to local: bring-up, NotReady; BENCH_ARGS=\"--cold-image --e2e\" for more"
	@echo "make report       reports/index.html and the allure report again from the last run"
	@echo "make mutants      each bug of the catalogue on alone, its cases must fail; then a clean run (BUGS=\"a b\")"

$(UV):
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Bytecode compiled at install: the ECS SDK's 1.9 MB client module otherwise compiles on
# every import (seconds per process) wherever PYTHONDONTWRITEBYTECODE is set.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

setup: $(VENV)/.synced

tools: setup
	$(ZP) tools build

# The tests that need no resource marker of conftest.py: no cluster, no Go build, no wheel.
# Four workers on any machine: most of their time is spent waiting on child processes.
# Property tests draw a quarter of their examples here (the quick profile); make test, all.
UNIT_MARKS := not (cluster or kind or toolchain or packaging or browser or driver)
unit: setup
	@$(call run_pytest,tests -m '$(UNIT_MARKS)' -n 4 --hypothesis-profile=quick)

# The kind provider's test needs Docker, mmdebstrap and Debian's static busybox: installed
# here when missing (as root, from Debian's packages), else named.
KIND_PACKAGES := docker.io mmdebstrap busybox-static containerd

kind-prereqs:
	@missing=$$(for p in $(KIND_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "error: the kind provider needs the Debian packages: $$missing" >&2; exit 1; fi; \
	  echo "installing $$missing (Debian packages, for the kind provider)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	fi

# The reports: the allure report needs Java and npm (npm installs the pinned allure command
# line on first use); the browser test of `make test` needs Debian's Chromium. Installed
# here when missing (as root, from Debian's packages), else named.
REPORT_COMMANDS := java:default-jre-headless npm:npm
BROWSER_COMMANDS := chromium:chromium

define install_commands
	@missing=$$(for pair in $(1); do command -v $${pair%%:*} >/dev/null || echo $${pair#*:}; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "error: the reports need the Debian packages: $$missing" >&2; exit 1; fi; \
	  echo "installing $$missing (Debian packages, for the reports)"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	  { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	fi
endef

report-prereqs:
	$(call install_commands,$(REPORT_COMMANDS))

browser-prereqs:
	$(call install_commands,$(REPORT_COMMANDS) $(BROWSER_COMMANDS))

test: tools kind-prereqs browser-prereqs
	@$(call run_pytest,tests)

E2E_WORKERS ?= 2
E2E_ARGS ?=
# local (control plane + kwok, the default) or kind (real kubelets in Docker)
PROVIDER ?= local

e2e: tools report-prereqs $(if $(filter kind,$(PROVIDER)),kind-prereqs)
	$(ZP) e2e --provider $(PROVIDER) --workers $(E2E_WORKERS) $(E2E_ARGS) $(PYTEST_ARGS)

cluster-up: tools
	$(ZP) cluster up

cluster-down: setup
	$(ZP) cluster down

cluster-status: setup
	$(ZP) cluster status

bench: tools
	$(PY) bench/cluster_bench.py

bench-chaos: tools
	$(PY) bench/chaos_bench.py

bench-ecs-connect: setup
	$(PY) bench/ecs_connect_bench.py $(BENCH_ARGS)

bench-scale: tools
	$(PY) bench/scale_bench.py $(BENCH_ARGS)

# The full e2e RUNS times back to back: per test the runs it failed in, per run what leaked.
RUNS ?= 10
soak: tools report-prereqs
	$(PY) bench/soak.py --runs $(RUNS) -- $(E2E_ARGS)

bench-kind: tools kind-prereqs
	$(PY) bench/kind_bench.py $(BENCH_ARGS)

BUGS ?=
mutants: tools
	$(ZP) bugs run $(BUGS)

# reports/index.html and the allure report again, from the last run's results
report: setup report-prereqs
	$(ZP) report

clean:
	rm -rf $(VENV) reports/allure-results reports/junit.xml .pytest_cache
