# Supply chain. Lock files: every runtime, dev, bench and build dependency pinned with its hashes (pip-tools), so an install
# resolves the same files on every machine and a tampered download is refused. `make install`, CI
# (through `make test`) and the Dockerfile install only from them (pip --require-hashes).

LOCK_TOOLS_DIR ?= .tools/lock
PIP_TOOLS_VERSION ?= 7.6.2
LOCK_VENV := $(LOCK_TOOLS_DIR)/venv-$(PIP_TOOLS_VERSION)
PIP_COMPILE := $(LOCK_VENV)/bin/pip-compile
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
  --no-emit-find-links --resolver=backtracking
## Extra pip-compile flags for `make lock`, e.g. LOCK_UPGRADE=--upgrade or "--upgrade-package redis".
LOCK_UPGRADE ?=

##@ Dependencies

# The lock tools themselves come from a hashed lock (requirements/tools.txt: pip-tools, and the
# pip-audit CI runs), in a venv of their own so their pins never touch the project's.
$(PIP_COMPILE): requirements/tools.txt
	test -x $(LOCK_VENV)/bin/python || $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --require-hashes -r requirements/tools.txt
	touch $@

.PHONY: lock
lock: $(PIP_COMPILE) ## Re-resolve requirements/*.txt from pyproject.toml (LOCK_UPGRADE=--upgrade to move pins).
	$(PIP_COMPILE) $(LOCK_FLAGS) $(LOCK_UPGRADE) --extra dev -o requirements/dev.txt \
	  pyproject.toml requirements/platform.in
	$(PIP_COMPILE) $(LOCK_FLAGS) $(LOCK_UPGRADE) -c requirements/dev.txt -o requirements/runtime.txt \
	  pyproject.toml requirements/platform.in
	$(PIP_COMPILE) $(LOCK_FLAGS) $(LOCK_UPGRADE) --extra dev --extra bench -c requirements/dev.txt \
	  -o requirements/bench.txt pyproject.toml requirements/platform.in
	$(PIP_COMPILE) $(LOCK_FLAGS) $(LOCK_UPGRADE) -o requirements/build.txt requirements/build.in
	$(PIP_COMPILE) $(LOCK_FLAGS) $(LOCK_UPGRADE) -o requirements/tools.txt requirements/tools.in
	for tools in chart-tools actionlint container-tools observability-tools; do \
	  $(PIP_COMPILE) $(LOCK_FLAGS) $(LOCK_UPGRADE) -o requirements/$$tools.txt requirements/$$tools.in \
	    || exit 1; \
	done

## Where `make image` writes the image's SBOM (CycloneDX JSON, made offline by trivy).
SBOM ?= build/sbom.cdx.json

.PHONY: sbom
sbom: container-tools ## Write the SBOM of IMAGE to SBOM (build/sbom.cdx.json); `make image` runs it.
	PODMAN=$(PODMAN) TRIVY=$(abspath $(CONTAINER_TRIVY)) hack/sbom.sh $(IMAGE) $(SBOM)
