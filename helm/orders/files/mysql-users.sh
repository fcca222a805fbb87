# One MySQL user per role. Sourced by the official image's docker-entrypoint.sh on the first start
# (it provides docker_process_sql and MYSQL_DATABASE), and run again by the mysql-users Job on every
# install and upgrade, so a changed user name or password reaches a data directory that already
# exists. Idempotent: users are created if missing, their passwords set to the Secret's, grants
# added. The user names are set above this text; the passwords come from the env.
#   api          SELECT on the database: it only reads orders.
#   invalidator  REPLICATION SLAVE, REPLICATION CLIENT on *.* (the binlog stream: server-wide,
#                docs/security.md), SELECT on the database, and writes to its heartbeat table
#                and the block counts only (it rebuilds them after a TRUNCATE): no TRIGGER or
#                LOCK TABLES (missing triggers are restored by migrate). CREATE on those two
#                tables makes the grants valid before they exist (MySQL refuses a table-level
#                grant on a missing table otherwise); it allows no other table.
#   migrate      DDL and DML on the database only: the migrate init containers and the seed Job.
orders_sql_literal() {
	local value=${1//\\/\\\\}
	printf "'%s'" "${value//\'/\\\'}"
}
orders_sql_identifier() {
	printf '`%s`' "${1//\`/\`\`}"
}
orders_db=$(orders_sql_identifier "$MYSQL_DATABASE")
docker_process_sql --database=mysql <<EOSQL
CREATE USER IF NOT EXISTS $(orders_sql_literal "$ORDERS_API_USER")@'%' IDENTIFIED BY $(orders_sql_literal "$ORDERS_API_PASSWORD");
CREATE USER IF NOT EXISTS $(orders_sql_literal "$ORDERS_INVALIDATOR_USER")@'%' IDENTIFIED BY $(orders_sql_literal "$ORDERS_INVALIDATOR_PASSWORD");
CREATE USER IF NOT EXISTS $(orders_sql_literal "$ORDERS_MIGRATE_USER")@'%' IDENTIFIED BY $(orders_sql_literal "$ORDERS_MIGRATE_PASSWORD");
ALTER USER $(orders_sql_literal "$ORDERS_API_USER")@'%' IDENTIFIED BY $(orders_sql_literal "$ORDERS_API_PASSWORD");
ALTER USER $(orders_sql_literal "$ORDERS_INVALIDATOR_USER")@'%' IDENTIFIED BY $(orders_sql_literal "$ORDERS_INVALIDATOR_PASSWORD");
ALTER USER $(orders_sql_literal "$ORDERS_MIGRATE_USER")@'%' IDENTIFIED BY $(orders_sql_literal "$ORDERS_MIGRATE_PASSWORD");
GRANT SELECT ON ${orders_db}.* TO $(orders_sql_literal "$ORDERS_API_USER")@'%';
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO $(orders_sql_literal "$ORDERS_INVALIDATOR_USER")@'%';
GRANT SELECT ON ${orders_db}.* TO $(orders_sql_literal "$ORDERS_INVALIDATOR_USER")@'%';
GRANT CREATE, INSERT, UPDATE, DELETE ON ${orders_db}.\`heartbeat\` TO $(orders_sql_literal "$ORDERS_INVALIDATOR_USER")@'%';
GRANT CREATE, INSERT, UPDATE, DELETE ON ${orders_db}.\`order_buckets\` TO $(orders_sql_literal "$ORDERS_INVALIDATOR_USER")@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, TRIGGER, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EXECUTE, LOCK TABLES, CREATE TEMPORARY TABLES ON ${orders_db}.* TO $(orders_sql_literal "$ORDERS_MIGRATE_USER")@'%';
EOSQL
unset orders_db
