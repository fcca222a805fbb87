# Redis ACL users (POSIX sh; run by the Redis container before redis-server starts).
#   default      the admin user: the probes (redis-cli with REDISCLI_AUTH) and operators.
#   api          the API's cache-aside calls and the near cache's subscription.
#   invalidator  the invalidation script and its publish.
# The application users reach only keys and channels under the deployment's prefix, and only the
# commands service/cache/ runs (the Lua scripts' redis.call() are checked against the same rules).
# Only commands every Redis 7.x knows: an unknown name in an ACL file aborts the start (CLIENT
# SETINFO is 7.2+; redis-py ignores its refusal).
set -eu
umask 077
orders_hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
# The rules are what `orders-service grants <role> --redis-prefix <prefix>` prints
# (service/orders/roles.py); tests/chart/test_chart_roles.py keeps them equal.
orders_api_rules="resetkeys ~${ORDERS_REDIS_PREFIX}:* resetchannels &${ORDERS_REDIS_PREFIX}:* -@all +ping +evalsha +script|load +get +set +del +time +mget +multi +exec +zadd +zrandmember +hset +subscribe +unsubscribe"
orders_invalidator_rules="resetkeys ~${ORDERS_REDIS_PREFIX}:* resetchannels &${ORDERS_REDIS_PREFIX}:* -@all +ping +evalsha +script|load +get +set +del +time +hget +zrangebyscore +zremrangebyscore +publish +incr +pexpire"
{
	echo "user default on #$(orders_hash "$REDIS_PASSWORD") ~* &* +@all"
	echo "user ${ORDERS_API_USER} on #$(orders_hash "$ORDERS_API_PASSWORD") ${orders_api_rules}"
	echo "user ${ORDERS_INVALIDATOR_USER} on #$(orders_hash "$ORDERS_INVALIDATOR_PASSWORD") ${orders_invalidator_rules}"
} > /run/redis/users.acl
unset orders_api_rules orders_invalidator_rules
