# Makefile: the project's entry points. GNU make.
#
#   make deps        install system packages, Go check, Azurite (scripts/deps.sh)
#   make services    deps, then PostgreSQL, Redis, Azurite up (scripts/services.sh)
#   make build       go build -buildvcs=true -o bin/ ./cmd/... (stamps the git revision: --version)
#   make test        services, go vet, go test, test-faults, then fuzz-short
#   make test-faults the long fault-injection tests (workers killed, services restarted)
#   make fuzz-short  every Fuzz target under internal/ for FUZZTIME (10s)
#   make demo        services, build, scripts/demo.sh
#   make bench       services, scripts/bench.sh
#   make backfill-demo  the README's backfill walk-through on a generated legacy catalogue
#   make chunked-demo   a 10-minute source through chunks by two workers, verified, played across every seam
#   make fmt | vet | clean
#
# Every recipe line that runs go sources scripts/env.sh first (each line is a
# new shell): it puts /usr/local/go/bin on PATH and sets the DATABASE_URL,
# REDIS_URL, AZURE_STORAGE_CONNECTION_STRING and TEST_* defaults.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
RUN := cd "$(ROOT)" && source "$(ROOT)/scripts/env.sh" &&

GO_TEST_TIMEOUT ?= 40m
FUZZTIME ?= 10s
export FUZZTIME

.PHONY: help deps services status stop-azurite build test test-faults backfill-demo chunked-demo fuzz-short fuzz-list \
	demo bench fmt vet clean

help:
	@sed -n 's/^#   make /  make /p' "$(ROOT)/Makefile"

deps:
	bash "$(ROOT)/scripts/deps.sh"

services: deps
	bash "$(ROOT)/scripts/services.sh"

status:
	bash "$(ROOT)/scripts/services.sh" status

stop-azurite:
	bash "$(ROOT)/scripts/services.sh" stop-azurite

build:
	$(RUN) go build -buildvcs=true -ldflags "-X github.com/hlsvault/hlsvault/internal/config.buildRevision=$$(git rev-parse HEAD 2>/dev/null)" -o bin/ ./cmd/...

# CI=true, when set by .ci/run, reaches go test through the environment.
test: services
	$(RUN) go vet ./...
	$(RUN) go vet -tags faults ./internal/faults/
	$(RUN) go test -count=1 -timeout $(GO_TEST_TIMEOUT) ./...
	$(MAKE) test-faults
	$(MAKE) fuzz-short

# The long fault-injection tests (real workers killed mid-job, services
# stopped and restarted); they start private Azurite and Redis instances.
test-faults: services
	$(RUN) go test -tags faults -count=1 -timeout 30m ./internal/faults/

fuzz-short:
	$(RUN) bash "$(ROOT)/scripts/fuzz-short.sh"

# Dry run of fuzz-short: the discovered "package-dir FuzzName" pairs.
fuzz-list:
	bash "$(ROOT)/scripts/fuzz-short.sh" --list

demo: services build
	$(RUN) bash "$(ROOT)/scripts/demo.sh"

backfill-demo: services build
	$(RUN) bash "$(ROOT)/scripts/backfill-demo.sh"

chunked-demo: services build
	$(RUN) bash "$(ROOT)/scripts/chunked-demo.sh"

bench: services
	$(RUN) bash "$(ROOT)/scripts/bench.sh"

fmt:
	$(RUN) go fmt ./...

vet:
	$(RUN) go vet ./...

# Never removes .cache/azurite (the npm install and its data).
clean:
	rm -rf "$(ROOT)/bin" "$(ROOT)/.cache/demo"
