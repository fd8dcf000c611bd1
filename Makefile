# CourseCast — every target installs what it needs first, so each works on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEV := $(BIN)/python -m devtools

.PHONY: help install system-deps demo test unit lint stack-up stack-down stack-status bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

system-deps:  ## Java check, apt packages (ffmpeg, postgresql) and the Kafka jars, when missing
	@bash devtools/stack/install.sh

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	@$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

install: system-deps $(BIN)/.installed  ## everything the services and tests need

stack-up: install  ## start Kafka, Postgres, S3 and check ffmpeg, all on 127.0.0.1
	@$(DEV) stack up

stack-down:  ## stop what stack-up started
	@$(DEV) stack down

stack-status:  ## each component, its address and whether it answers
	@$(DEV) stack status

demo: stack-up  ## publish a sample course end to end: progress, status, playable HLS URL
	@$(DEV) roundtrip
	@$(DEV) demo

lint: $(BIN)/.installed  ## ruff and mypy
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

unit: $(BIN)/.installed  ## the unit tests alone: no servers needed
	@$(BIN)/pytest tests/unit -q

# Two pytest workers, a test file each at a time: most tests wait on real encodes, leases and
# session timeouts rather than on the CPU, and each isolates its topics, schema and groups.
test: install lint  ## install, start the stack, run the whole suite, stop what was started
	@bash devtools/stack/with-stack.sh sh -c '$(BIN)/pytest -q -n 2 --dist loadfile --durations=10 -m "not cluster" && $(BIN)/pytest -q -m cluster' 

bench: stack-up  ## benchmarks against baselines of the same run; writes docs/benchmarks.md from it
	@$(BIN)/python -m bench --write docs/benchmarks.md

clean: stack-down
	rm -rf $(VENV) .cache
