# Local sharded PostgreSQL cluster (database/cluster.py): included by the main Makefile.
# Settings come from the environment: SHARDING_COUNT, CLUSTER_DIR, *_BASE_PORT, ... (see
# `python3 database/cluster.py env`). The launcher is standard-library Python: no venv needed.
CLUSTER := python3 database/cluster.py

.PHONY: up down down-clean ps stats logs-all db-shell

up: ## Start infrastructure (shards + replicas + PgBouncers + control DB); idempotent
	@$(CLUSTER) up

down: ## Stop every process of the cluster (data is kept)
	@$(CLUSTER) down

down-clean: ## Stop the cluster and delete its data (clean slate)
	@$(CLUSTER) clean

ps: ## Show cluster processes and per-shard replication state and lag
	@$(CLUSTER) ps

stats: ## Show CPU and memory of the cluster's processes, per role
	@$(CLUSTER) stats

logs-all: ## Show the last 50 lines of every cluster log (FOLLOW=1 to follow)
	@$(CLUSTER) logs $(if $(filter-out 0,$(FOLLOW)),-f)

db-shell: ## psql on a shard: make db-shell SHARD=0 [REPLICA=1] [DB=name]; CONTROL=1: control DB
	@$(CLUSTER) shell --shard $(or $(SHARD),0) $(if $(filter-out 0,$(REPLICA)),--replica) \
		$(if $(filter-out 0,$(CONTROL)),--control) $(if $(DB),--db $(DB))
