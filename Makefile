# LessonGate: `make demo` and `make test` set up everything they need, then run.
# Idempotent: a second run installs nothing and goes straight to the job.

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
EXAMPLE := schedules/example-school
# Debian packages the tests and the demo use (installed when missing and run as root).
DEB_PACKAGES := python3-venv nftables dnsmasq-base iproute2 procps debootstrap systemd-container \
	chromium prometheus
BENCH_PACKAGES := dnsmasq-base dnsperf
# The newest Python >= 3.12 on this machine (.python-version makes pyenv pick 3.13).
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { command -v $$p; break; }; done)

.PHONY: help setup debs demo test lint bench clean

help:
	@echo "make demo   - the example school's day on a simulated network, through the appliance"
	@echo "make test   - lint, type-check and run the test suite"
	@echo "make bench  - benchmarks (results in benchmarks/RESULTS.md)"

setup: debs $(VENV)/.installed

debs:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:" $$missing; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "missing Debian packages (run as root to install):" $$missing >&2; exit 1; fi; \
	fi

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.12 (pyenv install 3.13, or Debian 13's python3)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $@

demo: setup
	@$(VENV)/bin/lessongate validate $(EXAMPLE)
	@echo
	@$(VENV)/bin/lessongate demo --config $(EXAMPLE)

lint: setup
	$(VENV)/bin/ruff check appliance addons tests benchmarks deploy
	$(VENV)/bin/ruff format --check appliance addons tests benchmarks deploy
	$(VENV)/bin/mypy

test: setup lint
	@$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

bench: setup
	@$(MAKE) -s debs DEB_PACKAGES="$(BENCH_PACKAGES)"
	$(PY) benchmarks/policy.py
	$(PY) benchmarks/dns.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
