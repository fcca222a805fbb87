#!/usr/bin/env bash
# The project's own MariaDB for `make run`: the shared server on :3306 has no binary log, and the
# invalidator needs one (row format, full row image and metadata). Everything lives under $RUN_DIR.
#   hack/dev-mysql.sh up          start it on 127.0.0.1 (idempotent), give root a password
#                                 ($RUN_DIR/secrets/mysql-root), create database `orders` and one user
#                                 per role (orders_api, orders_invalidator, orders_migrate), grants
#   hack/dev-mysql.sh grant       the api's and the invalidator's grants (after `orders-service migrate`:
#                                 the invalidator's heartbeat grant names a table the migrations create)
#   hack/dev-mysql.sh env ROLE    print the ORDERS_* exports of ROLE (api, invalidator, migrate)
#   hack/dev-mysql.sh down        stop it
# The grants come from the package (service/orders/roles.py, `orders-service grants`), never from here.
set -euo pipefail
RUN_DIR=$(realpath -m "${RUN_DIR:-.run}")
PORT=${DEV_MYSQL_PORT:-3307}
DATA="$RUN_DIR/mysql/data"
SOCK="$RUN_DIR/mysql/mysqld.sock"
PIDF="$RUN_DIR/mysql/mysqld.pid"
SECRETS="$RUN_DIR/secrets"
ROLES=(api invalidator migrate)
GRANTS=${ORDERS_SERVICE:-$(dirname "$0")/../.venv/bin/orders-service}

ROOT_CNF="$RUN_DIR/mysql/root.cnf"
# root logs in with the password in $SECRETS/mysql-root, read from an option file (never argv).
client() { mariadb --defaults-extra-file="$ROOT_CNF" --protocol=socket -S "$SOCK" -uroot "$@"; }
alive() { [ -S "$SOCK" ] && mariadb-admin --no-defaults --protocol=socket -S "$SOCK" ping >/dev/null 2>&1; }
running() { alive && client -e 'SELECT 1' >/dev/null 2>&1; }

# A root password of its own (a data directory from before it had none: it gets one here).
secure_root() {
  if [ ! -s "$SECRETS/mysql-root" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$SECRETS/mysql-root")
  fi
  (umask 077; printf '[client]\npassword=%s\n' "$(cat "$SECRETS/mysql-root")" >"$ROOT_CNF")
  if mariadb --no-defaults --protocol=socket -S "$SOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
    printf "ALTER USER 'root'@'localhost' IDENTIFIED BY '%s';\n" "$(cat "$SECRETS/mysql-root")" |
      mariadb --no-defaults --protocol=socket -S "$SOCK" -uroot
  fi
}

up() {
  mkdir -p "$RUN_DIR/mysql" "$RUN_DIR/secrets"
  if alive; then secure_root; return 0; fi
  if [ ! -d "$DATA/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$DATA" --auth-root-authentication-method=normal \
      --skip-test-db >"$RUN_DIR/mysql/install.log" 2>&1
  fi
  # --user=root only matters when we are root (mariadbd refuses to run as root otherwise).
  local as_root=()
  [ "$(id -u)" = 0 ] && as_root=(--user=root)
  mariadbd --no-defaults "${as_root[@]}" --datadir="$DATA" --socket="$SOCK" --pid-file="$PIDF" \
    --port="$PORT" --bind-address=127.0.0.1 \
    --server-id=1 --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL \
    --binlog-row-metadata=FULL --log-bin-trust-function-creators=1 \
    --innodb-buffer-pool-size=512M --innodb-flush-log-at-trx-commit=2 \
    --log-error="$RUN_DIR/mysql/error.log" >/dev/null 2>&1 &
  for _ in $(seq 60); do alive && break; sleep 0.5; done
  alive || { echo "MariaDB did not start; see $RUN_DIR/mysql/error.log" >&2; exit 1; }
  secure_root
  client -e "CREATE DATABASE IF NOT EXISTS orders CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
  local role pw
  for role in "${ROLES[@]}"; do
    if [ ! -s "$SECRETS/mysql-$role" ]; then
      (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$SECRETS/mysql-$role")
    fi
    pw=$(cat "$SECRETS/mysql-$role")
    client <<<"CREATE USER IF NOT EXISTS 'orders_$role'@'127.0.0.1' IDENTIFIED BY '$pw';
               ALTER USER 'orders_$role'@'127.0.0.1' IDENTIFIED BY '$pw';"
  done
  "$GRANTS" grants migrate --user orders_migrate --host 127.0.0.1 | client
  echo "MariaDB for development: 127.0.0.1:$PORT, database orders, users orders_{${ROLES[*]}}" \
    "(passwords in $SECRETS)"
}

grant() {
  "$GRANTS" grants api --user orders_api --host 127.0.0.1 | client
  "$GRANTS" grants invalidator --user orders_invalidator --host 127.0.0.1 | while read -r statement; do
    # Until the invalidator's migration adds the heartbeat table, its grant cannot be given yet.
    if ! out=$(client -e "$statement" 2>&1); then
      case "$out" in
        *"ERROR 1146"*heartbeat*) echo "note: no heartbeat table yet; skipped: $statement" >&2 ;;
        *) echo "$out" >&2; exit 1 ;;
      esac
    fi
  done
}

env_() {
  local role=${1:?usage: $0 env api|invalidator|migrate} pw
  pw=$(cat "$SECRETS/mysql-$role")
  echo "export ORDERS_DATABASE_URL='mysql://orders_$role:$pw@127.0.0.1:$PORT/orders'"
}

down() {
  if [ -f "$PIDF" ]; then kill "$(cat "$PIDF")" 2>/dev/null || true; fi
  for _ in $(seq 60); do [ -f "$PIDF" ] || break; sleep 0.5; done
}

case "${1:-}" in
  up) up ;;
  grant) grant ;;
  env) env_ "${2:-}" ;;
  down) down ;;
  *) echo "usage: $0 up|grant|env ROLE|down" >&2; exit 2 ;;
esac
