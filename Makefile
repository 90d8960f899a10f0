# The front door: every target has a one-line `## help`. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
PORT ?= 8080
export PORT
# Fails on an HTTP error (printing its body) or no answer; sends API_KEY when given.
CURL_API = curl -sS --fail-with-body -w '\n' $(if $(API_KEY),-H "Authorization: Bearer $(API_KEY)")

include database/cluster.mk
include loadtest/loadtest.mk
include messenger/admin.mk
include bench/bench.mk

.PHONY: help system venv dev restart rebuild stop logs health shards migrate-make migrate-up \
	migrate-down migrate-latest migrate-check reshard test test-coverage lint createsuperuser bench seed

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {gsub(/\$$\(PORT\)/, "$(PORT)", $$2); \
		printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# Dev machines and CI get the runtime pins and the tools (requirements-dev.lock includes
# requirements.lock); the image installs requirements.lock alone.
$(VENV)/.installed: requirements.lock requirements-dev.lock pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements-dev.lock
	@touch $@

system: ## Install missing Debian packages (postgresql, pgbouncer, wrk, chromium, curl)
	@scripts/install-system.sh

venv: $(VENV)/.installed ## Create .venv with the locked runtime and development dependencies

dev: system venv up migrate-up ## Start everything: cluster, migrations, API on :$(PORT) with reload
	@scripts/api.sh start --reload

restart: venv ## Restart the API server without a pause (new workers ready before the old ones stop)
	@scripts/api.sh restart

rebuild: ## Reinstall Python dependencies and restart the API server
	@rm -f $(VENV)/.installed
	@$(MAKE) --no-print-directory venv
	@scripts/api.sh restart

stop: ## Stop the API server (the cluster keeps running; see `make down`)
	@scripts/api.sh stop

logs: ## Follow the API server's log
	@tail -n 100 -F var/log/api.log

health: ## Check the API on :$(PORT) (fails unless it answers and is ready; API_KEY=... if needed)
	@$(CURL_API) http://127.0.0.1:$(PORT)/health
	@$(CURL_API) http://127.0.0.1:$(PORT)/health/ready

shards: ## Show shard statistics (user counts per shard; API_KEY=... when API_AUTH=required)
	@$(CURL_API) http://127.0.0.1:$(PORT)/api/v1/shards/stats | $(PY) -m json.tool

migrate-make: venv ## Create a new migration: make migrate-make NAME=add_bio [APP=users]
	@test -n "$(NAME)" || { echo "usage: make migrate-make NAME=<name> [APP=users]"; exit 2; }
	$(MANAGE) makemigrations $(or $(APP),users) --name $(NAME)

migrate-up: venv ## Apply pending migrations on default and every shard
	$(MANAGE) migrate_shards

migrate-down: venv ## Roll back the last migration of APP (default users) on every shard
	$(MANAGE) migrate_shards --rollback-last $(or $(APP),users)

migrate-latest: venv ## Migrate every database to the latest version, then check for drift
	$(MANAGE) migrate_shards
	$(MANAGE) migrate_shards --check

migrate-check: venv ## Report each database's migrations; fail on pending ones or drift
	$(MANAGE) migrate_shards --check

# The hosts configured are SHARDING_COUNT's, SHARDS when it is unset (growing: the new hosts
# are configured; shrinking keeps SHARDING_COUNT at the hosts there are until the move ends).
reshard: venv ## Move slots online so SHARDS shards own them: make reshard SHARDS=6 (see --plan)
	@test -n "$(SHARDS)" || { echo "usage: make reshard SHARDS=<n>"; exit 2; }
	SHARDING_COUNT=$${SHARDING_COUNT:-$(SHARDS)} $(MANAGE) reshard --to $(SHARDS) --yes

test: system venv up ## Run the whole test suite against the real cluster
	$(VENV)/bin/pytest

test-coverage: venv up ## Run the tests with a coverage report
	$(VENV)/bin/pip install -q coverage pytest-cov
	$(VENV)/bin/pytest --cov=shards --cov=users --cov=messenger --cov-report=term-missing

lint: venv ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

createsuperuser: venv ## Create an admin user (or set DJANGO_SUPERUSER_* env vars)
	$(MANAGE) createsuperuser
