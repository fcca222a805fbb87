#!/usr/bin/env bash
# Start the whole stack with Docker Compose (compose.yaml): MySQL 8.4 with binlog, Redis 7,
# migrations and seed, the API on localhost:5001 (status page on :5002/status), the invalidator
# and the inspector. Then:
#   curl localhost:5001/orders/99
# Usage: ./run.sh [up|down|logs]    (down keeps the MySQL volume; `down -v` via compose removes it)
# Settings: ORDERS_IMAGE, SEED_ORDERS, ORDERS_HOST_PORT, COMPOSE, and the passwords (MYSQL_*_PASSWORD,
# REDIS_*_PASSWORD; random ones are written to .env).
set -euo pipefail
cd "$(dirname "$0")"

compose() {
  if [[ -n "${COMPOSE:-}" ]]; then
    read -ra cmd <<<"$COMPOSE"
  elif docker compose version >/dev/null 2>&1; then
    cmd=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    cmd=(docker-compose)
  elif command -v podman >/dev/null 2>&1 && podman compose version >/dev/null 2>&1; then
    cmd=(podman compose)
  else
    echo "run.sh: needs Docker Compose (docker compose, docker-compose or podman compose)" >&2
    exit 1
  fi
  "${cmd[@]}" -f compose.yaml "$@"
}

wait_ready() {
  local url="http://127.0.0.1:${ORDERS_ADMIN_HOST_PORT:-5002}/readyz"
  for _ in $(seq 180); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  echo "run.sh: $url did not answer within 3 minutes; see ./run.sh logs" >&2
  return 1
}

# Random passwords on first use, kept in .env (git-ignored), which Compose reads by itself.
ensure_secrets() {
  touch .env
  chmod 600 .env
  local name
  for name in MYSQL_ROOT_PASSWORD MYSQL_API_PASSWORD MYSQL_INVALIDATOR_PASSWORD \
    MYSQL_MIGRATE_PASSWORD REDIS_PASSWORD REDIS_API_PASSWORD REDIS_INVALIDATOR_PASSWORD; do
    if [[ -z "${!name:-}" ]] && ! grep -q "^${name}=" .env; then
      echo "${name}=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >>.env
    fi
  done
}

case "${1:-up}" in
  up)
    ensure_secrets
    compose up --detach --build
    wait_ready
    echo "orders is up: curl localhost:${ORDERS_HOST_PORT:-5001}/orders/99;" \
      "status: http://127.0.0.1:${ORDERS_ADMIN_HOST_PORT:-5002}/status"
    ;;
  down) compose down ;;
  logs) compose logs --follow ;;
  *) echo "usage: $0 [up|down|logs]" >&2; exit 2 ;;
esac
