# raftlog developer commands. Every target installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SEEDS ?= 1000
SEED_START ?= 0

.PHONY: help install run test test-all scenarios lint format typecheck bench bench-storage bench-metadata bench-client bench-failover bench-rebalance bench-throughput bench-e2e bench-scale test-sim rewrite clean

help:
	@echo "make run            install into .venv, start a 3-node cluster with a demo topic (Ctrl-C stops it)"
	@echo "make test           install and run the test suite (what CI runs)"
	@echo "make test-all       also the slow tests"
	@echo "make scenarios      the fault-injection catalogue S00-S16 on a real local cluster (SCENARIO_SEEDS, SCENARIO_NODES)"
	@echo "make test-sim       SEEDS=N SEED_START=S: many simulator seeds"
	@echo "make lint | typecheck | rewrite"
	@echo "make bench          the standard set (raftlog bench all, ~10 min): one table, bench-results.json"
	@echo "make bench-storage | bench-metadata | bench-client | bench-throughput | bench-e2e | bench-scale | bench-failover | bench-rebalance"

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/raftlog cluster up --nodes 3 --foreground --demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests

SCENARIO_SEEDS ?= 1
SCENARIO_NODES ?= 3
SCENARIO_DURATION ?= 60

scenarios: $(STAMP)
	@failed=0; for seed in $(SCENARIO_SEEDS); do \
		$(BIN)/raftlog scenario run all --seed $$seed --nodes $(SCENARIO_NODES) \
			--duration $(SCENARIO_DURATION) || failed=1; \
	done; exit $$failed

lint: $(STAMP)
	$(BIN)/ruff check raftlog cli scenarios tests bench
	$(BIN)/ruff format --check raftlog cli scenarios tests bench

format: $(STAMP)
	$(BIN)/ruff format raftlog cli scenarios tests bench
	$(BIN)/ruff check --fix raftlog cli scenarios tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict raftlog/storage raftlog/raft raftlog/metadata raftlog/wire raftlog/runtime raftlog/broker raftlog/client raftlog/types.py raftlog/errors.py raftlog/config.py
	@# cli/, scenarios/ and bench/ install as raftlog.cli, raftlog.scenarios, raftlog.bench,
	@# which mypy cannot follow through the editable install: check them in a linked tree
	@root=$$(mktemp -d) && mkdir $$root/raftlog && \
		for f in raftlog/*; do ln -s $(CURDIR)/$$f $$root/raftlog/; done && \
		ln -s $(CURDIR)/cli $$root/raftlog/cli && ln -s $(CURDIR)/scenarios $$root/raftlog/scenarios && \
		ln -s $(CURDIR)/bench $$root/raftlog/bench && \
		cd $$root && $(CURDIR)/$(BIN)/mypy --strict --config-file $(CURDIR)/pyproject.toml \
			raftlog/cli raftlog/scenarios raftlog/bench; rc=$$?; rm -rf $$root; exit $$rc

test-sim: $(STAMP)
	$(BIN)/python -m raftlog.testing.sim_cli --seeds $(SEEDS) --seed-start $(SEED_START)

rewrite: $(STAMP)
	RAFTLOG_REWRITE=1 $(BIN)/python -m pytest -q tests/datadriven

# the standard set of issue 10: BENCH_ROUNDS rounds of each figure; 3 rounds took 5 min on
# 2 shared cores, each more adds ~75 s, so 5 is about 8-10 min (scale creation varies)
BENCH_ROUNDS ?= 5
bench: $(STAMP)
	$(BIN)/raftlog bench all --rounds $(BENCH_ROUNDS) --json bench-results.json

bench-storage: $(STAMP)
	$(BIN)/python -m raftlog.bench.storage

bench-metadata: $(STAMP)
	$(BIN)/python -m raftlog.bench.metadata

bench-client: $(STAMP)
	$(BIN)/python -m raftlog.bench.codec

bench-failover: $(STAMP)
	$(BIN)/raftlog bench failover

bench-rebalance: $(STAMP)
	$(BIN)/raftlog bench rebalance

bench-throughput: $(STAMP)
	$(BIN)/raftlog bench all --only throughput

bench-e2e: $(STAMP)
	$(BIN)/raftlog bench e2e --rate 10000

bench-scale: $(STAMP)
	$(BIN)/raftlog bench scale --partitions 1000

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
