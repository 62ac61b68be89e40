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

.PHONY: install models train search report serve test test-unit lint bench clean container run-container k8s-tools k8s-check

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
test: install k8s-tools
	bash scripts/test-deps.sh $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy aifx training model_store_import experiments runners service.py aifx_client monitoring deploy bench soak
	$(BIN)/lint-imports
	$(BIN)/python -m aifx_client._generate --check

# checkov in its own venv (pinned in requirements-k8s.lock, ~290 MB): not a dependency of the project's code.
K8S_VENV := .venv-k8s
K8S_STAMP := $(K8S_VENV)/.installed
# The acceptance set of issue 28: root, privilege escalation, read-only root, root uid, NET_RAW, pod and
# container security contexts, seccomp, capabilities, high uid. tests/unit/test_k8s_manifests.py runs them all.
K8S_CHECKS := CKV_K8S_6,CKV_K8S_20,CKV_K8S_22,CKV_K8S_23,CKV_K8S_28,CKV_K8S_29,CKV_K8S_30,CKV_K8S_31,CKV_K8S_37,CKV_K8S_40

k8s-tools: $(K8S_STAMP)

$(K8S_STAMP): requirements-k8s.lock
	$(PYTHON) -m venv $(K8S_VENV)
	$(K8S_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-k8s.lock
	touch $@

# deploy/k8s/ against the Kubernetes schemas (strict: unknown fields fail; 1.30, the oldest these files
# need, and the newest bundled) and checkov's security set (--skip-download: no network).
k8s-check: install k8s-tools
	$(BIN)/kubernetes-validate --strict --quiet -k 1.30.0 deploy/k8s/*.yaml
	$(BIN)/kubernetes-validate --strict --quiet -k 1.37.0 deploy/k8s/*.yaml
	$(K8S_VENV)/bin/checkov -d deploy --framework kubernetes --skip-download --compact --quiet --check $(K8S_CHECKS)

# Speed targets are checked here, not in unit tests; results go to bench/results/ and docs/performance.md.
bench: models
	$(BIN)/python -m bench.run

clean:
	rm -rf $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache $(K8S_VENV)

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
