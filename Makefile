# pgkafka: build, test and benchmark. `make test` is what CI runs (.ci/run).

GO        ?= go
BENCH_ROWS ?= 200000
BENCH_BACKFILL_ROWS ?= 1000000
BENCH_RSS_ROWS ?= 1000000
BENCH_DEPLOY_ROWS ?= 300000

.PHONY: all build deps test unit lint bench demo clean

all: build

build:
	$(GO) build -o bin/pgkafka ./cmd/pgkafka

# Installs the system packages the tests and the demo need, when missing.
deps:
	.ci/deps

# Lint, then every test under the race detector (PostgreSQL clusters,
# kfake and srfake are started by the tests themselves).
test: deps lint
	$(GO) test -race -count=1 -timeout 25m ./...

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Streaming throughput against pg_recvlogical on the same WAL (DESIGN §9),
# then backfill throughput against COPY and a raw franz-go producer, then
# commit-to-visible latency at 1,000 and 5,000 transactions a second, with
# the server's synchronous_commit on, then off; then the peak RSS of the
# pgkafka binary itself (DESIGN §9: 128 MB). BenchmarkDeployment measures
# the same targets in a deployment's shape (pgkafka, the broker and
# registry, and PostgreSQL in processes of their own; each phase ends when a
# read_committed consumer has read its last record), with BENCH_DEPLOY_ROWS
# rows for the catch-up.
bench: deps
	set -e; for sc in on off; do \
		echo "== server synchronous_commit = $$sc"; \
		BENCH_SYNCHRONOUS_COMMIT=$$sc BENCH_ROWS=$(BENCH_ROWS) BENCH_BACKFILL_ROWS=$(BENCH_BACKFILL_ROWS) $(GO) test -run '^$$' -bench 'BenchmarkStreaming|BenchmarkBackfill|BenchmarkLatency' -benchtime 1x -count 1 -timeout 60m ./pipeline/; \
		BENCH_SYNCHRONOUS_COMMIT=$$sc BENCH_ROWS=$(BENCH_DEPLOY_ROWS) BENCH_BACKFILL_ROWS=$(BENCH_BACKFILL_ROWS) $(GO) test -run '^$$' -bench BenchmarkDeployment -benchtime 1x -count 1 -timeout 60m ./cmd/pgkafka/; \
	done
	BENCH_RSS_ROWS=$(BENCH_RSS_ROWS) $(GO) test -run '^$$' -bench BenchmarkRSS -benchtime 1x -count 1 -timeout 60m ./cmd/pgkafka/

demo: deps
	$(GO) run ./cmd/pgkafka demo

clean:
	rm -rf bin
	$(GO) clean -testcache
