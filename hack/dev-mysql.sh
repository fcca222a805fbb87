#!/usr/bin/env bash
# The project's own MariaDB for `make run`: the shared server on :3306 has no binary log, and the
# invalidator needs one (row format, full row image and metadata). Everything lives under $RUN_DIR.
#   hack/dev-mysql.sh up     start it (idempotent), create database `orders` and user `orders`
#   hack/dev-mysql.sh env    print the ORDERS_* exports that point the service at it
#   hack/dev-mysql.sh down   stop it
set -euo pipefail
RUN_DIR=$(realpath -m "${RUN_DIR:-.run}")
PORT=${DEV_MYSQL_PORT:-3307}
DATA="$RUN_DIR/mysql/data"
SOCK="$RUN_DIR/mysql/mysqld.sock"
PIDF="$RUN_DIR/mysql/mysqld.pid"
SECRET="$RUN_DIR/secrets/mysql-password"

client() { mariadb --protocol=socket -S "$SOCK" -uroot "$@"; }
running() { [ -S "$SOCK" ] && client -e 'SELECT 1' >/dev/null 2>&1; }

up() {
  mkdir -p "$RUN_DIR/mysql" "$RUN_DIR/secrets"
  if running; then return 0; fi
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
  for _ in $(seq 60); do running && break; sleep 0.5; done
  running || { echo "MariaDB did not start; see $RUN_DIR/mysql/error.log" >&2; exit 1; }
  if [ ! -s "$SECRET" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$SECRET")
  fi
  local pw; pw=$(cat "$SECRET")
  client <<SQL
CREATE DATABASE IF NOT EXISTS orders CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'orders'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'orders'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL PRIVILEGES ON orders.* TO 'orders'@'127.0.0.1';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'orders'@'127.0.0.1';
SQL
  echo "MariaDB for development: 127.0.0.1:$PORT, database orders, user orders (password in $SECRET)"
}

env_() {
  local pw; pw=$(cat "$SECRET")
  echo "export ORDERS_DATABASE_URL='mysql://orders:$pw@127.0.0.1:$PORT/orders'"
}

down() {
  if [ -f "$PIDF" ]; then kill "$(cat "$PIDF")" 2>/dev/null || true; fi
  for _ in $(seq 60); do [ -f "$PIDF" ] || break; sleep 0.5; done
}

case "${1:-}" in
  up) up ;;
  env) env_ ;;
  down) down ;;
  *) echo "usage: $0 up|env|down" >&2; exit 2 ;;
esac
