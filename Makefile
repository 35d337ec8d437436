# The commands a newcomer needs. Each target does its own setup.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
SHARED  ?= ../shared
CASES   ?= 20000
RCASES  ?= 8000

.PHONY: setup demo test bench bench-distributed bench-dashboard lint clean

$(BIN)/drgdip: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# the dashboard's chart library from the npm registry; without npm the rest still runs
setup: $(BIN)/drgdip
	@bash scripts/install-web.sh >/dev/null || echo "the dashboard's charts need Node.js and npm: install them, then run make setup again"

demo: setup
	$(BIN)/drgdip demo --scheme-path $(SHARED)/schemes/chs-drg-1.1

test: setup
	bash scripts/test.sh

bench: setup
	$(BIN)/python bench/bench_grouper.py --shared $(SHARED)
	$(BIN)/python bench/bench_intake.py --shared $(SHARED)
	$(BIN)/python bench/bench_cores.py --scheme-path $(SHARED)/schemes/chs-drg-1.1
	$(BIN)/python bench/bench_pipeline.py --scheme-path $(SHARED)/schemes/chs-drg-1.1 --cases $(CASES)
	$(BIN)/python bench/bench_loop_stall.py --shared $(SHARED)
	$(BIN)/python bench/bench_review_rules.py --scheme-path $(SHARED)/schemes/chs-drg-1.1 --cases $(RCASES)

# the dashboard's requests on a built read model of DASHBOARD_CASES cases (SQLite in /tmp;
# PG=postgresql+asyncpg://… for PostgreSQL)
DASHBOARD_CASES ?= 1000000
bench-dashboard: setup
	$(BIN)/python bench/bench_dashboard.py --cases $(DASHBOARD_CASES) --shared $(SHARED) $(if $(PG),--pg $(PG))

# the distributed pipeline (own PostgreSQL and Kafka): throughput, a stage's own rate with 1 and 2
# processes (DRAIN=grouper|pricer|review), latency, then every fault
DCASES ?= 10000
DRAIN ?= review
bench-distributed: setup
	$(BIN)/python bench/bench_distributed.py --scheme-path $(SHARED)/schemes/chs-drg-1.1 --cases $(DCASES)
	$(BIN)/python bench/bench_distributed.py --scheme-path $(SHARED)/schemes/chs-drg-1.1 --cases 20000 \
	  --drain $(DRAIN) --replicas $(DRAIN)=2
	$(BIN)/python bench/bench_distributed.py --scheme-path $(SHARED)/schemes/chs-drg-1.1 --latency
	$(BIN)/python bench/bench_distributed.py --scheme-path $(SHARED)/schemes/chs-drg-1.1 --cases $(DCASES) \
	  --fault services,broker,pg --rate 40

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy shared services drgdip

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
