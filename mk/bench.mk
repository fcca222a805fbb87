# Benchmark (issue 6): the service against the Flask floor and a Flask-Caching peer, same gunicorn
# settings, one run, interleaved. `python -m bench --help` lists every knob; results land in
# bench/results/. The bench runs its own MariaDB (port BENCH_MYSQL_PORT, data in .run/bench/) and
# uses the shared Redis under its own key prefix only.
# wrk comes from Debian's package, unpacked into .tools/ (no system install needed).

TOOLS_DIR ?= .tools
BENCH_OUT ?= bench/results
## Orders in the pagination table (seeded once, kept in .run/bench/ between runs).
BENCH_ORDERS ?= 10000000
## Length of `make soak`, in minutes.
BENCH_SOAK_MINUTES ?= 10
## Extra arguments for every bench command, e.g. BENCH_ARGS='--workers 2 --threads 4'.
BENCH_ARGS ?=
## Extra arguments for `make bench-invalidation`, e.g. '--writers 4 --write-rates 50k,100k --profile-invalidator'.
BENCH_ARGS_INVALIDATION ?=
## Extra arguments for `make bench-auth`, e.g. BENCH_ARGS_AUTH='--iterations 5000 --rounds 21'.
BENCH_ARGS_AUTH ?=
## Hot-set sizes (pages) of the hit-throughput curve; each is written straight into a Redis of
## the curve's own (bench/hot_fill.py; 1M pages: ~3 GB, a few minutes, the 10M-order table).
BENCH_HOT_SETS ?= 1000,10000,100000,1000000
## Table sizes (orders) of the miss-latency curve (the 10M table is seeded once, ~3 min).
BENCH_TABLE_SIZES ?= 100000,1000000,10000000
## Revisions `make bench-compare` runs side by side (HEAD: this working tree, edits included).
REV_A ?= $(shell git rev-parse --verify -q origin/main >/dev/null && echo origin/main || echo main)
REV_B ?= HEAD
## gunicorn settings `make bench-sweep` varies, one at a time from the shipped default.
BENCH_SWEEP_GRID ?= workers=2,3,6;threads=1,2,8;keepalive=0,30;worker_class=sync
export BENCH_MYSQL_PORT ?= 3316

WRK_DIR := $(TOOLS_DIR)/wrk
WRK_DEBS := wrk libluajit-5.1-2 libluajit-5.1-common
WRK_STAMP := $(TOOLS_DIR)/.wrk-debian
BENCH_PY_STAMP := $(VENV)/.bench-installed
BENCH := $(BIN)/python -m bench

##@ Benchmark

.PHONY: bench-tools
bench-tools: $(WRK_STAMP) $(BENCH_PY_STAMP) ## Unpack Debian's wrk into .tools/; install the bench extra (flask-caching, matplotlib, psutil, py-spy).

$(WRK_STAMP):
	@echo "first use: unpacking Debian's $(WRK_DEBS) (apt-get download, dpkg-deb) into $(WRK_DIR) (mk/bench.mk)"
	rm -rf $(WRK_DIR) && mkdir -p $(WRK_DIR)/debs
	cd $(WRK_DIR)/debs && { apt-get download $(WRK_DEBS) 2>/dev/null \
	  || { apt-get update -qq && apt-get download $(WRK_DEBS); }; }
	for deb in $(WRK_DIR)/debs/*.deb; do dpkg-deb -x "$$deb" $(WRK_DIR); done
	{ LD_LIBRARY_PATH=$(WRK_DIR)/usr/lib/x86_64-linux-gnu $(WRK_DIR)/usr/bin/wrk -v || true; } | grep -q '^wrk'
	touch $@

$(BENCH_PY_STAMP): pyproject.toml requirements/bench.txt | $(INSTALL_STAMP)
	@echo "first use: the bench extra into $(VENV) (requirements/bench.txt, hash-checked)"
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/bench.txt
	touch $@

.PHONY: bench
bench: install bench-tools ## Every target of issue 13 met / not met: floor vs peer vs service, cost curves, invalidation (~15 min).
	$(BENCH) bench --out $(BENCH_OUT) --hot-sets '$(BENCH_HOT_SETS)' \
	  --table-sizes '$(BENCH_TABLE_SIZES)' $(BENCH_ARGS)

.PHONY: bench-curves
bench-curves: install bench-tools ## The two cost curves of `make bench` alone (hot-set size, table size), each beside the floor.
	$(BENCH) curves --out $(BENCH_OUT) --hot-sets '$(BENCH_HOT_SETS)' \
	  --table-sizes '$(BENCH_TABLE_SIZES)' $(BENCH_ARGS)

.PHONY: bench-compare
bench-compare: install bench-tools ## Hit throughput and CPU per hit of REV_A vs REV_B (default HEAD: working tree), interleaved; prints B/A.
	$(BENCH) compare --rev-a '$(REV_A)' --rev-b '$(REV_B)' --out $(RUN_DIR)/bench/compare $(BENCH_ARGS)

.PHONY: bench-sweep
bench-sweep: install bench-tools ## gunicorn workers/threads/keep-alive/worker class swept; floor, peer and service under each (~10 min).
	$(BENCH) sweep --grid '$(BENCH_SWEEP_GRID)' --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-invalidation
bench-invalidation: install bench-tools ## Only the invalidation targets (~2 min): follower rows/s vs the library's decoding, then commit-to-visible through the API vs transaction size and write rate.
	$(BIN)/python -m bench.follower_throughput --out $(BENCH_OUT)
	$(BENCH) invalidation --out $(BENCH_OUT) $(BENCH_ARGS_INVALIDATION)

.PHONY: bench-replicas
bench-replicas: install bench-tools ## Only the replica reads (~1 min): primary queries per 1,000 misses with and without replicas, fill latency through a replica, fallback share at 0/1/5 s lag.
	$(BIN)/python -m bench.replica_reads --out $(BENCH_OUT)

.PHONY: bench-promotion
bench-promotion: install bench-tools ## Only the MySQL failover figures (~1 min): promotion to the first invalidation from the new primary, pages stale after 20 promotions (bench/promotion.py).
	$(BENCH) promotion --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-pagination
bench-pagination: install bench-tools ## Miss latency of page 1 vs the last page at BENCH_ORDERS orders (seeds once; 10M takes a while).
	$(BENCH) pagination --orders $(BENCH_ORDERS) --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: soak
soak: install bench-tools ## BENCH_SOAK_MINUTES at 70% of max with worker recycling: errors, RSS growth, /metrics scrape time.
	$(BENCH) soak --minutes $(BENCH_SOAK_MINUTES) --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-profile
bench-profile: install bench-tools ## py-spy on one service worker under hit load; writes bench/results/profile-hit.collapsed.
	$(BENCH) profile --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-ablation
bench-ablation: install bench-tools ## The service with its request log line, then its near cache, switched off: cost of each per hit.
	$(BENCH) ablation --out $(BENCH_OUT) $(BENCH_ARGS)

.PHONY: bench-auth
bench-auth: install ## Cost of the bearer-token check per request in us: first verification vs cached, auth off vs on.
	$(BIN)/python -m bench.auth_cost --out $(BENCH_OUT) $(BENCH_ARGS_AUTH)

.PHONY: bench-smoke
bench-smoke: install bench-tools ## Every bench phase for a second or two, results in .run/bench/smoke (what `make test` runs).
	$(BENCH) smoke --out $(RUN_DIR)/bench/smoke $(BENCH_ARGS)

# The smoke test in tests/bench/ needs wrk and the bench extra.
test: bench-tools
