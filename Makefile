# The few commands a user types. `make test` is what CI runs.
SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
FUZZ_SECONDS ?= 20

.PHONY: build wasm native test test-rust fuzz-smoke bench clean-run setup run token e2e bench-e2e

## Everything a fresh machine needs: the wasm target, SoftHSM2, PostgreSQL, cargo-fuzz.
setup:
	./scripts/setup.sh

## Release builds of everything: target/release/certbind (the control plane's command line),
## target/release/certbind-authz, the filter (below) and the dynamic module (native).
build: wasm native
	$(CARGO) build --workspace --release --exclude certbind-native

## The filter as Envoy loads it: target/wasm32-wasip1/release/certbind_filter.wasm
wasm:
	$(CARGO) build -p certbind-filter --target $(WASM_TARGET) --release

## The filter as an Envoy dynamic module: target/native/libcertbind.so (panics unwind to the
## hook that refuses the request, so never the release profile's abort)
native:
	$(CARGO) build -p certbind-native --profile native

## Every test: unit, table-driven (native and through the .wasm), control plane against
## SQLite and a real PostgreSQL, HSM signing through SoftHSM2, end to end through a real Envoy,
## and a short fuzz run.
test: setup
	./scripts/test.sh
	./scripts/e2e.sh
	$(MAKE) fuzz-smoke

fuzz-smoke:
	./scripts/fuzz-smoke.sh $(FUZZ_SECONDS)

## The development stack in the foreground, from release builds: control plane on
## https://127.0.0.1:8080, Envoy with the filter on https://localhost:8443, state under .dev/.
## Ctrl-C stops it.
run:
	./scripts/run.sh

## A demo JWT bound to a card (CARD=.dev/pki/demo-card.crt by default), from the demo issuer.
CARD ?= .dev/pki/demo-card.crt
token:
	@cd scripts && ../.venv/bin/python -m devstack.tokens --state ../.dev --cert ../$(CARD)

## The end-to-end suite alone: real Envoy, control plane, SoftHSM2, real client certificates.
e2e:
	./scripts/e2e.sh

## The end-to-end benchmark alone (Envoy, and certbind-authz behind NGINX, Traefik and Envoy ext_authz; wrk);
## report in target/bench-report-e2e.md.
bench-e2e:
	./scripts/bench-e2e.sh

## Benchmarks; the report lands in target/bench-report.md (the end-to-end one included).
bench: setup
	./scripts/bench.sh
