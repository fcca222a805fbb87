# Observability: the tools that prove the metrics, dashboard and alerts against real components.
# Everything lands in .tools/ (git-ignored) at pinned versions; stamp files make reruns instant.
# Prometheus and promtool come from Debian's `prometheus` package, unpacked into .tools/ with
# dpkg-deb rather than installed, so no system daemon is started and nothing outside the tree changes.

OBS_TOOLS_DIR ?= .tools
OBS_BIN := $(abspath $(OBS_TOOLS_DIR))/bin
## Debian's prometheus package version (2.42 on bookworm); `apt-cache policy prometheus` shows it.
PROMETHEUS_DEB_VERSION ?= 2.42.0+ds-5+deb12u1
GRAFANA_SCHEMA_VERSION ?= 13.2.3
TS_JSON_SCHEMA_GENERATOR_VERSION ?= 2.9.0

OBS_PROM_STAMP := $(OBS_TOOLS_DIR)/.obs-prometheus-$(PROMETHEUS_DEB_VERSION)
OBS_SCHEMA_STAMP := $(OBS_TOOLS_DIR)/.obs-grafana-schema-$(GRAFANA_SCHEMA_VERSION)-$(TS_JSON_SCHEMA_GENERATOR_VERSION)
OBS_PY_STAMP := $(OBS_TOOLS_DIR)/.obs-py
# The classic dashboard model (the JSON the Grafana sidecar loads) as TypeScript, turned into a schema.
GRAFANA_DASHBOARD_TYPES := node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts
GRAFANA_DASHBOARD_SCHEMA := $(OBS_TOOLS_DIR)/grafana-dashboard.schema.json
OBS_DASHBOARD := helm/orders/dashboards/orders.json
OBS_RULES := helm/orders/rules/orders-rules.yaml

##@ Observability

.PHONY: observability-tools
observability-tools: $(OBS_PROM_STAMP) $(OBS_SCHEMA_STAMP) $(OBS_PY_STAMP) ## Install prometheus, promtool, Grafana's dashboard schema, check-jsonschema and matplotlib into .tools/.

$(OBS_PROM_STAMP):
	@echo "first use: unpacking Debian's prometheus=$(PROMETHEUS_DEB_VERSION) (apt-get download, dpkg-deb) into .tools/bin (mk/observability.mk)"
	mkdir -p $(OBS_BIN)
	rm -rf $(OBS_TOOLS_DIR)/prometheus-deb && mkdir -p $(OBS_TOOLS_DIR)/prometheus-deb
	cd $(OBS_TOOLS_DIR)/prometheus-deb && { apt-get download prometheus=$(PROMETHEUS_DEB_VERSION) \
	  || { apt-get update -qq && apt-get download prometheus=$(PROMETHEUS_DEB_VERSION); }; }
	dpkg-deb -x $(OBS_TOOLS_DIR)/prometheus-deb/prometheus_*.deb $(OBS_TOOLS_DIR)/prometheus-deb/root
	install -m 0755 $(OBS_TOOLS_DIR)/prometheus-deb/root/usr/bin/prometheus $(OBS_BIN)/prometheus
	install -m 0755 $(OBS_TOOLS_DIR)/prometheus-deb/root/usr/bin/promtool $(OBS_BIN)/promtool
	rm -rf $(OBS_TOOLS_DIR)/prometheus-deb
	$(OBS_BIN)/promtool --version | head -1
	touch $@

$(OBS_SCHEMA_STAMP):
	@echo "first use: npm install @grafana/schema@$(GRAFANA_SCHEMA_VERSION) ts-json-schema-generator@$(TS_JSON_SCHEMA_GENERATOR_VERSION) into .tools/obs-node (mk/observability.mk)"
	mkdir -p $(OBS_TOOLS_DIR)/obs-node
	cd $(OBS_TOOLS_DIR)/obs-node && test -f package.json || echo '{"private": true}' > package.json
	cd $(OBS_TOOLS_DIR)/obs-node && npm install --silent --no-audit --no-fund \
	  @grafana/schema@$(GRAFANA_SCHEMA_VERSION) ts-json-schema-generator@$(TS_JSON_SCHEMA_GENERATOR_VERSION)
	cd $(OBS_TOOLS_DIR)/obs-node && node_modules/.bin/ts-json-schema-generator \
	  --path $(GRAFANA_DASHBOARD_TYPES) --type Dashboard --no-type-check \
	  --out $(abspath $(GRAFANA_DASHBOARD_SCHEMA))
	touch $@

# A venv of its own: the picture and schema tools are not the service's dependencies.
$(OBS_PY_STAMP): requirements/observability-tools.txt
	@echo "first use: pip install check-jsonschema and matplotlib (requirements/observability-tools.txt, hashed) into .tools/obs-venv (mk/observability.mk)"
	test -x $(OBS_TOOLS_DIR)/obs-venv/bin/python || $(PYTHON) -m venv $(OBS_TOOLS_DIR)/obs-venv
	$(OBS_TOOLS_DIR)/obs-venv/bin/python -m pip install --quiet --require-hashes \
	  -r requirements/observability-tools.txt
	touch $@

.PHONY: observability-check
observability-check: observability-tools ## promtool check rules and test rules; dashboard against Grafana's schema.
	$(OBS_BIN)/promtool check rules $(OBS_RULES)
	$(OBS_BIN)/promtool test rules helm/orders/rules/tests/*.yaml
	$(OBS_TOOLS_DIR)/obs-venv/bin/check-jsonschema --schemafile $(GRAFANA_DASHBOARD_SCHEMA) $(OBS_DASHBOARD)

.PHONY: observability-test
observability-test: install observability-tools ## The observability tests: real service, real Prometheus, OTLP receiver.
	$(BIN)/pytest tests/observability

.PHONY: observability-picture
observability-picture: install observability-tools ## Redraw docs/observability.png from a real scrape (runs the stack test).
	OBS_PICTURE=$(abspath docs/observability.png) $(BIN)/pytest tests/observability -m docs

test: observability-tools
