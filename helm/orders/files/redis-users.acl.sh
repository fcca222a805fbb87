# Redis ACL users (POSIX sh; run by the Redis container before redis-server starts).
#   default      the admin user: the probes (redis-cli with REDISCLI_AUTH) and operators.
#   api          the API's cache-aside calls and the near cache's subscription.
#   invalidator  the invalidation script and its publish.
# The application users read keys under the deployment's prefix, write only the keys their role
# must (Redis 7 key selectors: the api never the checkpoint, position, fence or invalidator
# lease), reach only channels under the prefix, and run only the commands service/cache/ sends:
# FCALL of the cache's function library, never EVAL, SCRIPT or FUNCTION LOAD (a function's
# redis.call() is checked against the caller's rules). The library is written below and loaded
# by the admin user once Redis answers (the startup probe), after every start.
# Only commands every Redis 7.x knows: an unknown name in an ACL file aborts the start (CLIENT
# SETINFO is 7.2+; redis-py ignores its refusal).
set -eu
umask 077
orders_hash() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
# The rules are what `orders-service grants <role> --redis-prefix <prefix>` prints
# (service/orders/roles.py); tests/chart/test_chart_roles.py keeps them equal.
orders_api_rules="resetkeys resetchannels %R~${ORDERS_REDIS_PREFIX}:* ~${ORDERS_REDIS_PREFIX}:s*:page:* ~${ORDERS_REDIS_PREFIX}:s*:lease:* ~${ORDERS_REDIS_PREFIX}:s*:index ~${ORDERS_REDIS_PREFIX}:s*:totals ~${ORDERS_REDIS_PREFIX}:s*:config ~${ORDERS_REDIS_PREFIX}:s*:hot ~${ORDERS_REDIS_PREFIX}:s*:inspector:found &${ORDERS_REDIS_PREFIX}:* -@all +ping +fcall +get +set +del +time +info +role +zrange +zremrangebyrank +pexpire +mget +multi +exec +zadd +zrandmember +hset +subscribe +unsubscribe"
orders_invalidator_rules="resetkeys resetchannels %R~${ORDERS_REDIS_PREFIX}:* ~${ORDERS_REDIS_PREFIX}:s*:page:* ~${ORDERS_REDIS_PREFIX}:s*:lease:* ~${ORDERS_REDIS_PREFIX}:s*:index ~${ORDERS_REDIS_PREFIX}:s*:totals ~${ORDERS_REDIS_PREFIX}:s*:binlog ~${ORDERS_REDIS_PREFIX}:s*:checkpoint ~${ORDERS_REDIS_PREFIX}:s*:gtid ~${ORDERS_REDIS_PREFIX}:s*:invalidator:lease ~${ORDERS_REDIS_PREFIX}:s*:invalidator:fence &${ORDERS_REDIS_PREFIX}:* -@all +ping +fcall +get +set +del +time +info +role +hget +zrangebyscore +zremrangebyscore +publish +incr +pexpire"
{
	echo "user default on #$(orders_hash "$REDIS_PASSWORD") ~* &* +@all"
	echo "user ${ORDERS_API_USER} on #$(orders_hash "$ORDERS_API_PASSWORD") ${orders_api_rules}"
	echo "user ${ORDERS_INVALIDATOR_USER} on #$(orders_hash "$ORDERS_INVALIDATOR_PASSWORD") ${orders_invalidator_rules}"
} > /run/redis/users.acl
unset orders_api_rules orders_invalidator_rules
# `orders-service load-functions --print`; tests/security/test_redis_roles.py keeps it equal.
cat > /run/redis/functions.lua <<'ORDERS_FUNCTIONS'
#!lua name=orders_86a8bb13e606
redis.register_function{function_name='orders_86a8bb13e606_lease_at', flags={}, callback=function(KEYS, ARGV)
if KEYS[3] and ARGV[4] ~= '' then
  if tonumber(redis.call('GET', KEYS[3]) or '0') < tonumber(ARGV[4]) then
    redis.call('SET', KEYS[3], ARGV[4])
  end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[3]) end
  local now = redis.call('TIME')
  local checkpoint = redis.call('GET', ARGV[6]) or ''
  local gtid, vouched = string.match(redis.call('GET', ARGV[5]) or '', '^([^|]*)|(.*)$')
  if vouched ~= checkpoint then gtid = '' end
  return {tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000), gtid, checkpoint}
end
return {0, '', ''}
end}
redis.register_function{function_name='orders_86a8bb13e606_fill', flags={}, callback=function(KEYS, ARGV)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
end}
redis.register_function{function_name='orders_86a8bb13e606_invalidate', flags={'allow-oom'}, callback=function(KEYS, ARGV)
local prefix = ARGV[1]
if ARGV[7] ~= '' and redis.call('GET', prefix .. 'invalidator:fence') ~= ARGV[7] then
  return -1
end
if ARGV[8] ~= '' and redis.call('GET', prefix .. 'binlog') ~= ARGV[8] then
  return -2
end
local index = prefix .. 'index'
local message = {}
for i = 10, #ARGV do
  redis.call('DEL', prefix .. 'page:' .. ARGV[i], prefix .. 'lease:' .. ARGV[i])
  message[#message + 1] = 'p' .. ARGV[i]
end
if ARGV[2] ~= '' then
  local pages = redis.call('ZRANGEBYSCORE', index, ARGV[2], '+inf')
  for start = 1, #pages, 500 do
    local batch = {}
    for j = start, math.min(start + 499, #pages) do
      batch[#batch + 1] = prefix .. 'page:' .. pages[j]
      batch[#batch + 1] = prefix .. 'lease:' .. pages[j]
    end
    redis.call('DEL', unpack(batch))
  end
  redis.call('ZREMRANGEBYSCORE', index, ARGV[2], '+inf')
  message[#message + 1] = 'f' .. ARGV[2]
end
if ARGV[3] == '' then
  redis.call('DEL', prefix .. 'totals', prefix .. 'lease:totals')
  message[#message + 1] = 't'
elseif ARGV[3] ~= '-' then
  redis.call('SET', prefix .. 'totals', ARGV[3], 'EX', ARGV[4])
  redis.call('DEL', prefix .. 'lease:totals')
  message[#message + 1] = 't'
end
if ARGV[5] ~= '' then redis.call('SET', prefix .. 'binlog', ARGV[5]) end
local stored = redis.call('GET', prefix .. 'checkpoint')
if ARGV[6] ~= '' then
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local at = tonumber(ARGV[6])
  local previous = tonumber(stored or '0') or 0
  if at <= now and (at > previous or previous > now) then
    redis.call('SET', prefix .. 'checkpoint', at)
    stored = tostring(at)
  end
end
if stored then message[#message + 1] = 'c' .. stored end
local state = ARGV[9]
if state == '' then state = string.match(redis.call('GET', prefix .. 'gtid') or '', '^[^|]*') end
if state ~= '' then redis.call('SET', prefix .. 'gtid', state .. '|' .. (stored or '')) end
if #message > 0 then
  redis.call('PUBLISH', prefix .. 'invalidations', table.concat(message, ' '))
end
return #message
end}
redis.register_function{function_name='orders_86a8bb13e606_acquire_lease', flags={}, callback=function(KEYS, ARGV)
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
  return token
end
return 0
end}
redis.register_function{function_name='orders_86a8bb13e606_renew_lease', flags={}, callback=function(KEYS, ARGV)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
end}
redis.register_function{function_name='orders_86a8bb13e606_refence_lease', flags={}, callback=function(KEYS, ARGV)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local token = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[2] .. ':' .. token, 'PX', ARGV[3])
  return token
end
return 0
end}
redis.register_function{function_name='orders_86a8bb13e606_release_lease', flags={'allow-oom'}, callback=function(KEYS, ARGV)
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
end}
redis.register_function{function_name='orders_86a8bb13e606_invalidate_group', flags={'allow-oom'}, callback=function(KEYS, ARGV)
local fence = tonumber(redis.call('GET', KEYS[6]) or '0')
if ARGV[7] ~= '' and fence > tonumber(ARGV[7]) then return -1 end
if ARGV[8] ~= '' and (redis.call('GET', KEYS[8]) or '') ~= ARGV[8] then return -2 end
if ARGV[7] ~= '' and fence < tonumber(ARGV[7]) then redis.call('SET', KEYS[6], ARGV[7]) end
local message = {}
for i = 9, #KEYS, 2 do redis.call('DEL', KEYS[i], KEYS[i + 1]) end
for i = 11, #ARGV do message[#message + 1] = 'p' .. ARGV[i] end
if ARGV[10] ~= '' then redis.call('SET', KEYS[8], ARGV[10]) end
if ARGV[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], ARGV[2], '+inf')
  message[#message + 1] = 'f' .. ARGV[2]
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[2], KEYS[3])
  message[#message + 1] = 't'
elseif ARGV[3] ~= '-' then
  redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
  redis.call('DEL', KEYS[3])
  message[#message + 1] = 't'
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5]) end
local stored = redis.call('GET', KEYS[5])
if ARGV[6] ~= '' then
  local now = redis.call('TIME')
  now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local at = tonumber(ARGV[6])
  local previous = tonumber(stored or '0') or 0
  if at <= now and (at > previous or previous > now) then
    redis.call('SET', KEYS[5], at)
    stored = tostring(at)
  end
end
if stored then message[#message + 1] = 'c' .. stored end
local state = ARGV[9]
if state == '' then state = string.match(redis.call('GET', KEYS[7]) or '', '^[^|]*') end
if state ~= '' then redis.call('SET', KEYS[7], state .. '|' .. (stored or '')) end
if #message > 0 then
  redis.call('SPUBLISH', ARGV[1] .. 'invalidations', table.concat(message, ' '))
end
return #message
end}
redis.register_function{function_name='orders_86a8bb13e606_take_fence', flags={}, callback=function(KEYS, ARGV)
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
if fence > tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
end}
ORDERS_FUNCTIONS
