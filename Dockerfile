# syntax=docker/dockerfile:1
# The orders service image: a virtualenv built in one stage, copied into a clean copy of the same
# base, run as UID 10001 with a read-only root filesystem (only /tmp needs to be writable).
#
#   make image                                   podman, on the debootstrap base this machine builds
#   docker build -t orders-service .             anywhere the official Python image can be pulled
#
# BASE_IMAGE must provide `python3` with the venv module (the official image does; so does
# localhost/pybase:bookworm from hack/podman-setup.sh). Both stages use it, so the venv's
# interpreter link resolves in the runtime stage.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change, not on
# every edit of the service. The pip cache mount keeps wheels between builds without storing them
# in a layer.
WORKDIR /src
COPY pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt

# Then the service itself, without touching the dependencies installed above. pip and setuptools
# leave the venv (the runtime installs nothing), and the entry point must at least start.
COPY README.md ./
COPY service/ ./service/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps . \
    && python3 -m pip uninstall --yes --quiet pip setuptools \
    && orders-service --help > /dev/null

FROM ${BASE_IMAGE} AS runtime

# A fixed, numeric, unprivileged identity: Kubernetes' runAsNonRoot can only verify a numeric USER,
# and 10001 is clear of the base image's system users and of common host UIDs.
RUN groupadd --gid 10001 orders \
    && useradd --uid 10001 --gid orders --no-create-home --no-log-init --home-dir /nonexistent \
        --shell /usr/sbin/nologin orders

COPY --from=build /opt/venv /opt/venv
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time (bytecode was compiled at
# install). PYTHONUNBUFFERED: log lines reach `kubectl logs` at once.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
# HTTP API (ORDERS_PORT) and the invalidator's metrics (ORDERS_INVALIDATOR_METRICS_PORT).
EXPOSE 5001 9102
ENTRYPOINT ["orders-service"]
CMD ["serve"]

# Last, so a new revision rebuilds only this metadata, not the layers above.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="orders-service" \
      org.opencontainers.image.description="Paginated orders API: MySQL behind a Redis cache-aside layer." \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
