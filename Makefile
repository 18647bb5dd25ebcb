# Nimbus: `make run` sets up, builds and starts the server; `make test` runs every test.
GO       ?= go
BIN      := bin/nimbus
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/nimbus-ai/nimbus/internal/cli.Version=$(VERSION)
ARGS     ?=
FUZZTIME ?= 10s

.PHONY: all setup build run test test-short fuzz bench bench-serverless bench-gitops bench-security bench-rollout bench-events models lint clean

all: build

setup: ## install what is missing (ONNX Runtime library, Go modules); idempotent
	@scripts/setup.sh

build: ## build bin/nimbus
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nimbus

run: setup build ## set up, build and start the server on ./nimbus-data
	./$(BIN) server $(ARGS)

test: setup ## every test, with the race detector, then a short run of each fuzz target
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5s

test-short: ## tests without the race detector (faster while editing)
	$(GO) test -count=1 ./...

fuzz: ## run each fuzz target for FUZZTIME (default 10s)
	@scripts/fuzz.sh $(FUZZTIME)

bench: setup build ## benchmarks; see docs/BENCHMARKS.md
	@bench/run.sh

bench-serverless: setup build ## serverless benchmarks: cold start, density, memory return (~2 min); see docs/BENCHMARKS.md
	@BENCH_COMMAND="make bench-serverless" bench/serverless.sh

bench-gitops: setup ## GitOps benchmarks: commit to serving, 1,000-resource syncs (~2 min); see docs/BENCHMARKS.md
	go test -run '^$$' -bench GitOps -benchtime 20x -count 2 ./e2e/

bench-rollout: ## rollout cost: measurement windows on the request path, one analysis tick (~1 min); see docs/BENCHMARKS.md
	go test -run '^$$' -bench RolloutWindow -benchmem -count 5 ./serving/router/
	go test -run '^$$' -bench Next -benchmem -count 5 ./rollout/

bench-events: setup ## trigger loop vs each broker's pass-through, small and medium MLP: loopback NATS, Redis and Mosquitto, in-process kfake (~8 min); see docs/BENCHMARKS.md
	go test -run '^$$' -bench 'Trigger|PassThrough' -benchtime 1x -count 3 ./trigger/

bench-security: setup ## auth and rate limiter cost: middleware and over loopback (~2 min); see docs/BENCHMARKS.md
	go test -run '^$$' -bench . -benchmem -count 3 ./auth/
	go test -run '^$$' -bench AuthLoopback -benchtime 5s -count 3 ./e2e/

models: ## regenerate the test models and their answers (needs Debian's python3-onnx, node and npm)
	/usr/bin/python3 testdata/models/gen_models.py
	cd bench/peers/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --silent
	node testdata/models/node_answers.js

clean:
	rm -rf bin
