# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VERSIONS := v3.0 v3.1 v3.2
ARTIFACTS := artifacts
PORT ?= 3000
export PYTHONPATH := $(CURDIR)
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install models train search report serve test test-unit lint bench clean container run-container

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

# Train and import the default models only when the store lacks them.
models: install
	$(BIN)/python -m model_store_import ensure --artifacts $(ARTIFACTS) $(VERSIONS)

train: install
	for v in $(VERSIONS); do $(BIN)/python -m training --version $$v --out $(ARTIFACTS)/$$v || exit 1; done

# v3.2's Transformer size, chosen before the first walk-forward test block; writes training/v32_search.json.
search: install
	$(BIN)/python -m training.search

report: install
	$(BIN)/python -m training.report --artifacts $(ARTIFACTS) --out docs

serve: models migrate
	BENTOML_CONFIG=configuration.yaml $(BIN)/bentoml serve . --port $(PORT) --timeout-keep-alive 75

# Installs promtool/prometheus and starts a local PostgreSQL when missing or stopped, then pytest.
test: install
	bash scripts/test-deps.sh $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy aifx training model_store_import experiments runners service.py aifx_client monitoring deploy bench soak
	$(BIN)/lint-imports
	$(BIN)/python -m aifx_client._generate --check

# Speed targets are checked here, not in unit tests; results go to bench/results/ and docs/performance.md.
bench: models
	$(BIN)/python -m bench.run

clean:
	rm -rf $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache

# Sustained mixed traffic (predict, compare, metrics reads, version switches, experiment cycles):
# fails on any 5xx or on >= 10 % RSS growth of the server process tree.
.PHONY: soak soak-pg migrate
soak: models
	$(BIN)/python -m soak.run

# The same against the local PostgreSQL (a fresh schema); experiment predictions p99 <= 250 ms.
soak-pg: models
	$(BIN)/python -m soak.run --postgres

# Bring the state database ($$AIFX_DATABASE_URL, default sqlite:///var/aifx.db) to this code's schema.
migrate: install
	$(BIN)/python -m experiments migrate

# The serving image (podman, Debian base from debootstrap, serving requirements only): docs/deployment.md.
# Needs Debian's podman, runc and debootstrap (scripts/test-deps.sh installs them as root).
container: models
	$(BIN)/python -m deploy.container build

# Foreground, host network on $(PORT); AIFX_*, ENVIRONMENT, LOG_LEVEL pass through. Ctrl-C / SIGTERM stops it.
run-container:
	$(BIN)/python -m deploy.container run --port $(PORT)
