# pgkafka: build, test and benchmark. `make test` is what CI runs (.ci/run).

GO        ?= go
BENCH_ROWS ?= 200000
BENCH_BACKFILL_ROWS ?= 1000000
BENCH_RSS_ROWS ?= 1000000
BENCH_DEPLOY_ROWS ?= 300000

# The PostgreSQL major versions that test-versions runs the end-to-end tests
# on, besides the system's 15 that `go test` finds: built once by
# .ci/pgversions (called by .ci/deps) into $(PGTEST_PG_CACHE)/pgMAJOR. Not
# PGKAFKA_ variables: pgkafka reads every one as configuration, and refuses
# the keys it does not know.
PGTEST_PG_VERSIONS ?= 13 18
PGTEST_PG_CACHE ?= /var/cache/pgkafka
export PGTEST_PG_VERSIONS PGTEST_PG_CACHE
# What test-versions runs on each: the packages whose tests start a server
# (cmd/pgkafka's too, once they pass on 13: see README, PostgreSQL versions).
VERSION_PKGS ?= ./pgsrc/... ./pipeline/

.PHONY: all build deps test test-versions test-versions-only unit lint bench demo clean

all: build

build:
	$(GO) build -o bin/pgkafka ./cmd/pgkafka

# Installs the system packages the tests and the demo need, when missing,
# and builds the PostgreSQL versions of test-versions when not cached.
deps:
	.ci/deps

# Lint, then every test under the race detector (PostgreSQL clusters,
# kfake and srfake are started by the tests themselves) on the system's
# PostgreSQL 15, then the end-to-end tests on the other versions.
test: deps lint
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) --no-print-directory test-versions-only

# The tests of the packages that start a server, on each PostgreSQL of
# PGTEST_PG_VERSIONS (without -race: the race run on 15 covers that).
# A test of a feature a version lacks skips there and says why.
test-versions: deps test-versions-only

test-versions-only:
	@set -e; for v in $(PGTEST_PG_VERSIONS); do \
		echo "== PostgreSQL $$v: $(PGTEST_PG_CACHE)/pg$$v/bin"; \
		start=$$(date +%s); \
		PGTEST_BINDIR=$(PGTEST_PG_CACHE)/pg$$v/bin $(GO) test -count=1 -timeout 20m $(VERSION_PKGS); \
		echo "== PostgreSQL $$v: passed in $$(( $$(date +%s) - start )) s"; \
	done

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
