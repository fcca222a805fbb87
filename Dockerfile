# syntax=docker/dockerfile:1.10.0
# The orders service image: dependencies and service built in separate stages, copied into a clean
# copy of the same base, run as UID 10001 with a read-only root filesystem (only /tmp is written).
#
#   make image                                   podman, on the debootstrap base this machine builds
#   docker build -t orders-service .             anywhere the official Python image can be pulled
#
# BASE_IMAGE must provide `python3` with the venv module (the official image does; so does
# localhost/pybase:bookworm from hack/podman-setup.sh). Every stage uses it, so the venv's
# interpreter link resolves in the runtime stage. The default and the frontend above are pinned
# to exact versions, not floating tags; no registry was reachable where they were chosen, so no
# digest is given here. Add it for a release build, the tag beside it
# (`--build-arg BASE_IMAGE=python:3.11.13-slim-bookworm@sha256:...`, from `docker buildx
# imagetools inspect python:3.11.13-slim-bookworm`; likewise `docker/dockerfile:1.10.0@sha256:...`).
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# Stage 1, the dependencies, only from the lock files (`make lock`): every file pinned and checked
# against its hash, so a build resolves the same files anywhere. Two venvs: /opt/pip holds the
# installer and the build backend and is never shipped; /opt/venv holds only the libraries the
# service imports. This layer is rebuilt only when a lock changes, never on an edit of the service.
# The cache mount keeps downloads between builds without storing them in a layer. The .pth file
# puts /opt/app (stage 2) on the import path.
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
COPY requirements/build.txt requirements/runtime.txt /tmp/
RUN --mount=type=cache,target=/root/.cache/pip \
    python3 -m venv /opt/pip \
    && python3 -m venv --without-pip /opt/venv \
    && /opt/pip/bin/pip install --require-hashes --requirement /tmp/build.txt \
    && /opt/pip/bin/pip --python /opt/venv/bin/python3 install --require-hashes \
        --requirement /tmp/runtime.txt \
    && /opt/venv/bin/python3 -c 'import sysconfig; \
open(sysconfig.get_path("purelib") + "/orders-service-app.pth", "w").write("/opt/app\n")'
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH

# Stage 2, the service: a wheel built without the network, installed (without dependencies) into
# /opt/app, a small layer of its own in the runtime image. The entry point must at least start.
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service/ ./service/
RUN /opt/pip/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && /opt/pip/bin/pip --python /opt/venv/bin/python3 install --no-deps --target /opt/app \
        /tmp/wheels/*.whl \
    && orders-service --help > /dev/null

FROM ${BASE_IMAGE} AS runtime

# A fixed, numeric, unprivileged identity: Kubernetes' runAsNonRoot can only verify a numeric USER,
# and 10001 is clear of the base image's system users and of common host UIDs.
RUN groupadd --gid 10001 orders \
    && useradd --uid 10001 --gid orders --no-create-home --no-log-init --home-dir /nonexistent \
        --shell /usr/sbin/nologin orders

# Dependencies first (changes rarely), then the service (changes on every release).
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /opt/app /opt/app
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time (bytecode was compiled at
# install). PYTHONUNBUFFERED: log lines reach `kubectl logs` at once.
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
# HTTP API (ORDERS_PORT) and the invalidator's metrics (ORDERS_INVALIDATOR_METRICS_PORT).
EXPOSE 5001 9102
ENTRYPOINT ["orders-service"]
CMD ["serve"]

# Static metadata. Version and revision are stamped by the build (`make image` passes --label):
# podman/buildah 1.28 reuse a cached LABEL layer even when the build-args in it changed.
LABEL org.opencontainers.image.title="orders-service" \
      org.opencontainers.image.description="Paginated orders API: MySQL behind a Redis cache-aside layer." \
      org.opencontainers.image.licenses="Apache-2.0"
