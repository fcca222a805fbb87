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
orders_app_rules="resetkeys ~${ORDERS_REDIS_PREFIX}:* resetchannels &${ORDERS_REDIS_PREFIX}:* -@all +ping +hello +select +get +mget +set +del +unlink +zadd +zrangebyscore +zremrangebyscore +evalsha +eval +script|load +script|exists +publish +subscribe +unsubscribe"
{
	echo "user default on #$(orders_hash "$REDIS_PASSWORD") ~* &* +@all"
	echo "user ${ORDERS_API_USER} on #$(orders_hash "$ORDERS_API_PASSWORD") ${orders_app_rules}"
	echo "user ${ORDERS_INVALIDATOR_USER} on #$(orders_hash "$ORDERS_INVALIDATOR_PASSWORD") ${orders_app_rules}"
} > /run/redis/users.acl
unset orders_app_rules
