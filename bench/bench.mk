# Benchmarks (bench/run.py): included by the main Makefile. BENCH_PORT picks the first of the
# servers' three ports (ours, ours with API_AUTH=required, the FastAPI reference).
BENCH := $(PY) bench/run.py

.PHONY: bench bench-scale seed

bench: venv ## Benchmark ours vs bare Django, stock DRF and FastAPI+asyncpg; writes docs/BENCHMARKS.md
	$(BENCH) $(BENCH_ARGS)

bench-scale: venv ## Seed the dev database up to 10M users once, measure GET/list/cursor/stats
	$(BENCH) --scale $(BENCH_ARGS)

seed: venv ## Bulk-load users with COPY: make seed COUNT=100000 [BATCH=50000]
	@test -n "$(COUNT)" || { echo "usage: make seed COUNT=<users> [BATCH=50000]"; exit 2; }
	$(MANAGE) seed_users --count $(COUNT) $(if $(BATCH),--batch $(BATCH))
