# Load tests (locust): see loadtest/README.md. Every target takes BASE_URL= (default
# http://127.0.0.1:$(PORT)), USERS=, DURATION= (seconds), SPAWN_RATE=, PROCESSES=, PACING=
# and RESULTS_DIR= to override the scenario's defaults; each exits non-zero when a threshold
# fails. Results: loadtest/results/<timestamp>-<scenario>/ (report.html, CSVs, summary.txt).

LOADTEST_RUN = $(PY) loadtest/run.py
LOADTEST_ARGS = $(if $(BASE_URL),--base-url $(BASE_URL)) \
	$(if $(USERS),--users $(USERS)) \
	$(if $(DURATION),--run-time $(DURATION)) \
	$(if $(SPAWN_RATE),--spawn-rate $(SPAWN_RATE)) \
	$(if $(PROCESSES),--processes $(PROCESSES)) \
	$(if $(PACING),--pacing $(PACING)) \
	$(if $(RESULTS_DIR),--results-dir $(RESULTS_DIR))

.PHONY: loadtest-help loadtest-smoke loadtest loadtest-custom loadtest-10k loadtest-crud \
	loadtest-stress loadtest-spike loadtest-soak loadtest-pagination loadtest-read \
	loadtest-write loadtest-report loadtest-clean

loadtest-help: ## List the load-test targets, their options and thresholds
	@echo "Load tests (locust, headless) against BASE_URL (default http://127.0.0.1:$(PORT))."
	@echo "Options: USERS=N DURATION=S SPAWN_RATE=R PROCESSES=P PACING=S BASE_URL=URL RESULTS_DIR=DIR"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^loadtest[a-zA-Z0-9_-]*:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' loadtest/loadtest.mk
	@echo
	@$(LOADTEST_RUN) --list

loadtest-smoke: venv ## Quick validation: 10 users, 30 s, every endpoint and body checked
	@$(LOADTEST_RUN) smoke $(LOADTEST_ARGS)

loadtest: venv ## Standard load test: 100 users, 60 s, mixed workload
	@$(LOADTEST_RUN) load $(LOADTEST_ARGS)

loadtest-custom: venv ## Your size: make loadtest-custom USERS=N DURATION=S [PACING=S]
	@$(LOADTEST_RUN) custom $(LOADTEST_ARGS)

loadtest-10k: venv ## 10,000 concurrent users on keep-alive connections (about 4 min)
	@$(LOADTEST_RUN) 10k $(LOADTEST_ARGS)

loadtest-crud: venv ## Create, get, list, update, get, delete, get-404 with every body checked
	@$(LOADTEST_RUN) crud $(LOADTEST_ARGS)

loadtest-stress: venv ## High load: 500 users, 120 s
	@$(LOADTEST_RUN) stress $(LOADTEST_ARGS)

loadtest-spike: venv ## Sudden burst: 20 users, jump to 300, back to 20 (load shape, 90 s)
	@$(LOADTEST_RUN) spike $(LOADTEST_ARGS)

loadtest-soak: venv ## Steady moderate load (~60 req/s) for 5 minutes
	@$(LOADTEST_RUN) soak $(LOADTEST_ARGS)

loadtest-pagination: venv ## Deep cursor walks: order, duplicates and missing rows checked
	@$(LOADTEST_RUN) pagination $(LOADTEST_ARGS)

loadtest-read: venv ## Read-heavy workload: 80 % reads
	@$(LOADTEST_RUN) read $(LOADTEST_ARGS)

loadtest-write: venv ## Write-heavy workload: 80 % creates, updates and deletes
	@$(LOADTEST_RUN) write $(LOADTEST_ARGS)

loadtest-report: ## Print the latest run's summary and open (or print) its HTML report
	@$(LOADTEST_RUN) --report $(if $(RESULTS_DIR),--results-dir $(RESULTS_DIR))

loadtest-clean: ## Remove every load-test result (loadtest/results/)
	rm -rf loadtest/results
