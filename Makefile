# One way to build, run, test, benchmark and lint mcp-v8. Every target bootstraps
# first (system libraries, libnode, .venv, the release build); that step is idempotent.
.PHONY: bootstrap run snippet wheel test test-fast test-rust test-python bench cluster lint fmt

VENV := .venv
PY := $(VENV)/bin/python
CODE ?= console.log('hello from V8', 6 * 7); [1, 2].map(x => x * 2)

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	$(VENV)/bin/mcp-v8 serve

snippet: bootstrap
	$(PY) -m mcp_v8 run "$(CODE)"

wheel:
	bash scripts/build-wheel.sh dist

test: bootstrap test-rust test-python

test-rust:
	cargo test --workspace --quiet

test-python:
	$(PY) -m pytest -q

# What a developer runs between edits: every level but e2e and packaging (tests/conftest.py).
test-fast: bootstrap
	cargo test --workspace --quiet --lib
	$(PY) -m pytest -q -m "not e2e and not packaging"

bench: bootstrap
	$(PY) benches/run.py

# PostgreSQL + SeaweedFS S3 + three nodes on this machine, a short mixed load, a summary per node.
cluster: bootstrap
	PY=$(PY) bash scripts/cluster.sh

lint: bootstrap
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m mypy.stubtest mcp_v8._engine
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --workspace --all-targets --features python -- -D warnings

fmt:
	$(VENV)/bin/ruff format python tests benches
	cargo fmt --all
