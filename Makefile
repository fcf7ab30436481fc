# The few commands a user types. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
FUZZ_SECONDS ?= 20

.PHONY: build wasm test test-rust fuzz-smoke bench clean-run setup

## Everything a fresh machine needs: the wasm target, SoftHSM2, PostgreSQL, cargo-fuzz.
setup:
	./scripts/setup.sh

build: wasm
	$(CARGO) build --workspace --release

## The filter as Envoy loads it: target/wasm32-wasip1/release/certbind_filter.wasm
wasm:
	$(CARGO) build -p certbind-filter --target $(WASM_TARGET) --release

## Every test: unit, table-driven (native and through the .wasm), control plane against
## SQLite and a real PostgreSQL, HSM signing through SoftHSM2, and a short fuzz run.
test: setup
	./scripts/test.sh
	$(MAKE) fuzz-smoke

fuzz-smoke:
	./scripts/fuzz-smoke.sh $(FUZZ_SECONDS)

## Benchmarks; the report lands in target/bench-report.md.
bench: setup
	./scripts/bench.sh
