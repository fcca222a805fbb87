# Redis replication with Sentinels (POSIX sh; redis.architecture=replication). Sourced by the
# redis and the sentinel container of every node before their server starts.
#   orders_primary     prints the current primary's host: what the Sentinels say (they agree
#                      once a failover is over), else node 0 (the first start: no Sentinel yet).
#   orders_node_conf   the redis container's extra config: a replica of the primary unless this
#                      node is the primary; replication as `default` (the admin user).
#   orders_sentinel_conf  the sentinel container's config, monitoring the primary; the apps ask
#                      the Sentinels as their own users with the Sentinels' password, allowed
#                      discovery only (`orders-service grants <role> --topology sentinel`).
# Nodes are named by their stable DNS names (<pod>.<headless Service>.<namespace>.svc), never by
# pod IP, so a rescheduled pod keeps its identity (Sentinel resolve-hostnames/announce-hostnames).
# Environment: ORDERS_NODE_HOSTS (one name a line, node 0 first), ORDERS_SELF, ORDERS_MASTER_SET,
# ORDERS_QUORUM, ORDERS_DOWN_AFTER, ORDERS_FAILOVER_TIMEOUT, REDIS_PASSWORD and
# ORDERS_SENTINEL_PASSWORD (from the Secret; written only to memory-backed emptyDirs), and for
# the Sentinels ORDERS_API_USER and ORDERS_INVALIDATOR_USER.
set -eu
umask 077
# What each app user may ask a Sentinel (service/orders/roles.py SENTINEL_COMMANDS; the chart
# tests keep them equal): discovery only, never a failover or a reconfiguration.
orders_sentinel_rules="-@all +ping +sentinel|masters +sentinel|get-master-addr-by-name"

orders_primary() {
	for orders_host in $ORDERS_NODE_HOSTS; do
		[ "$orders_host" = "$ORDERS_SELF" ] && continue
		orders_answer=$(REDISCLI_AUTH="$ORDERS_SENTINEL_PASSWORD" timeout 3 \
			redis-cli -h "$orders_host" -p 26379 --raw \
			SENTINEL get-master-addr-by-name "$ORDERS_MASTER_SET" 2>/dev/null | head -n 1) || true
		case "$orders_answer" in
		"" | *ERR* | *NOAUTH* | *WRONGPASS*) ;;
		*)
			echo "$orders_answer"
			return 0
			;;
		esac
	done
	# No other Sentinel answers: the first start (or every node down at once). Node 0 leads.
	for orders_host in $ORDERS_NODE_HOSTS; do
		echo "$orders_host"
		return 0
	done
}

orders_node_conf() {
	orders_leader=$(orders_primary)
	{
		echo "replica-announce-ip $ORDERS_SELF"
		echo "masteruser default"
		echo "masterauth $REDIS_PASSWORD"
		if [ "$orders_leader" != "$ORDERS_SELF" ]; then
			echo "replicaof $orders_leader 6379"
		fi
	} >/run/redis/replication.conf
	echo "orders: node $ORDERS_SELF starts as $([ "$orders_leader" = "$ORDERS_SELF" ] && echo primary || echo "replica of $orders_leader")"
}

orders_sentinel_conf() {
	orders_leader=$(orders_primary)
	{
		echo "port 26379"
		echo "dir /run/sentinel"
		echo "sentinel resolve-hostnames yes"
		echo "sentinel announce-hostnames yes"
		echo "sentinel announce-ip $ORDERS_SELF"
		echo "requirepass $ORDERS_SENTINEL_PASSWORD"
		echo "sentinel sentinel-pass $ORDERS_SENTINEL_PASSWORD"
		orders_sentinel_hash=$(printf '%s' "$ORDERS_SENTINEL_PASSWORD" | sha256sum | cut -d' ' -f1)
		for orders_user in "$ORDERS_API_USER" "$ORDERS_INVALIDATOR_USER"; do
			echo "user $orders_user on #$orders_sentinel_hash $orders_sentinel_rules"
		done
		echo "sentinel monitor $ORDERS_MASTER_SET $orders_leader 6379 $ORDERS_QUORUM"
		echo "sentinel auth-user $ORDERS_MASTER_SET default"
		echo "sentinel auth-pass $ORDERS_MASTER_SET $REDIS_PASSWORD"
		echo "sentinel down-after-milliseconds $ORDERS_MASTER_SET $ORDERS_DOWN_AFTER"
		echo "sentinel failover-timeout $ORDERS_MASTER_SET $ORDERS_FAILOVER_TIMEOUT"
		echo "sentinel parallel-syncs $ORDERS_MASTER_SET 1"
	} >/run/sentinel/sentinel.conf
}
