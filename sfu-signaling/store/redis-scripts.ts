/**
 * The Lua scripts behind RedisStore. Redis runs a script to completion before any other command, so each
 * one is the Redis counterpart of one SQLite transaction: whatever it checks still holds when it writes,
 * whichever DS node sent it. Every key a script touches is passed in KEYS.
 *
 * Numbers are stored as decimal strings. Counters move by HINCRBY (exact integers) and are compared as
 * strings (both sides canonical decimals), so no value goes through a Lua double and back; `string.format`
 * with %d prints a seq as an integer where Lua's own conversion would print 1e+15.
 */

export interface RedisScript {
  readonly name: string;
  readonly lua: string;
}

/**
 * KEYS: group hash, room key, open-groups zset. ARGV: group id, room, suite, epoch, GroupInfo, tree,
 * createdAt, creation token.
 * -> {"ok"} | {"room", id of the room's open group} | {"id"} (the group id was used before).
 * A creation whose token is already on the group is a resend of one that succeeded (the reply was lost).
 */
export const CREATE_GROUP: RedisScript = {
  name: "create-group",
  lua: `
if redis.call('HGET', KEYS[1], 'token') == ARGV[8] then return {'ok'} end
local open = redis.call('GET', KEYS[2])
if open then return {'room', open} end
if redis.call('EXISTS', KEYS[1]) == 1 then return {'id'} end
redis.call('HSET', KEYS[1], 'room', ARGV[2], 'suite', ARGV[3], 'epoch', ARGV[4], 'seq', '0', 'epochSeq', '0',
  'groupInfo', ARGV[5], 'tree', ARGV[6], 'closed', '0', 'createdAt', ARGV[7], 'token', ARGV[8])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
return {'ok'}
`,
};

/**
 * The sequencer. KEYS: group hash, log hash (seq -> entry), recent-tokens zset (token -> seq).
 * ARGV: token, expected epoch ("" = none), expected head seq ("" = none), encoded entry, "1" to move to the
 * next epoch, its GroupInfo, its tree, how many tokens to remember.
 * -> {"ok", seq} | {"unknown-group"} | {"closed" | "conflict", HGETALL of the group}.
 *
 * The token makes a resend harmless: the client library resends a command whose reply a dropped connection
 * lost, and if the first one ran, its seq is answered again instead of a second entry (or a spurious
 * conflict). Only the newest tokens are kept: a resend follows its original within one reconnect.
 */
export const APPEND: RedisScript = {
  name: "append",
  lua: `
local prior = redis.call('ZSCORE', KEYS[3], ARGV[1])
if prior then return {'ok', tonumber(prior)} end
local head = redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'closed')
if not head[1] then return {'unknown-group'} end
if head[3] ~= '0' then return {'closed', redis.call('HGETALL', KEYS[1])} end
if ARGV[2] ~= '' and (ARGV[2] ~= head[1] or (ARGV[3] ~= '' and ARGV[3] ~= head[2])) then
  return {'conflict', redis.call('HGETALL', KEYS[1])}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local s = string.format('%d', seq)
redis.call('HSET', KEYS[2], s, ARGV[4])
if ARGV[5] == '1' then
  redis.call('HINCRBY', KEYS[1], 'epoch', 1)
  redis.call('HSET', KEYS[1], 'epochSeq', s, 'groupInfo', ARGV[6], 'tree', ARGV[7])
end
redis.call('ZADD', KEYS[3], s, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1 - tonumber(ARGV[8]))
return {'ok', seq}
`,
};

/**
 * KEYS: group hash, log hash. ARGV: after, limit (the caller keeps it small enough for one HMGET).
 * -> the encoded entries after..min(after + limit, head), in order.
 */
export const READ_LOG: RedisScript = {
  name: "read-log",
  lua: `
local head = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local after = tonumber(ARGV[1])
local last = math.min(head, after + tonumber(ARGV[2]))
if last <= after then return {} end
local fields = {}
for s = after + 1, last do fields[#fields + 1] = string.format('%d', s) end
return redis.call('HMGET', KEYS[2], unpack(fields))
`,
};

/** KEYS: group hash, room key, open-groups zset, recent-tokens zset. ARGV: group id. */
export const CLOSE_GROUP: RedisScript = {
  name: "close-group",
  lua: `
if redis.call('HGET', KEYS[1], 'closed') ~= '0' then return 0 end
redis.call('HSET', KEYS[1], 'closed', '1')
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[4])
return 1
`,
};

/** KEYS: the group's acks hash. ARGV: member, seq. Keeps the maximum. */
export const ACK: RedisScript = {
  name: "ack",
  lua: `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or tonumber(ARGV[2]) > tonumber(current) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
`,
};

/*
 * KeyPackages of one (user, device, suite) live in a list (single-use refs, oldest first) and a hash:
 * n:<ref> not_after, k:<ref> KeyPackage, i:<ref> identity key, and lr, lr:n, lr:k, lr:i for the
 * last-resort one. A global set holds every stored ref (refs are unique across the directory), a per-user
 * set the devices ever seen, a per-device set the suites that still hold something.
 */

/**
 * KEYS[1]: refs set; then per KeyPackage: queue list, data hash, device's suites set, user's devices set.
 * ARGV per KeyPackage: ref, device, suite, "1" if last resort, not_after, KeyPackage, identity key.
 * -> how many were stored.
 */
export const PUT_KEY_PACKAGES: RedisScript = {
  name: "put-key-packages",
  lua: `
local stored = 0
for i = 0, #ARGV / 7 - 1 do
  local queue, data, suites, devices = KEYS[2 + 4 * i], KEYS[3 + 4 * i], KEYS[4 + 4 * i], KEYS[5 + 4 * i]
  local ref, device, suite, lastResort, notAfter, kp, ik =
    ARGV[1 + 7 * i], ARGV[2 + 7 * i], ARGV[3 + 7 * i], ARGV[4 + 7 * i], ARGV[5 + 7 * i], ARGV[6 + 7 * i], ARGV[7 + 7 * i]
  redis.call('SADD', devices, device)
  if lastResort == '1' then
    local old = redis.call('HGET', data, 'lr')
    if old then
      redis.call('SREM', KEYS[1], old)
      redis.call('HDEL', data, 'lr', 'lr:n', 'lr:k', 'lr:i')
    end
  end
  if redis.call('SADD', KEYS[1], ref) == 1 then
    redis.call('SADD', suites, suite)
    if lastResort == '1' then
      redis.call('HSET', data, 'lr', ref, 'lr:n', notAfter, 'lr:k', kp, 'lr:i', ik)
    else
      redis.call('RPUSH', queue, ref)
      redis.call('HSET', data, 'n:' .. ref, notAfter, 'k:' .. ref, kp, 'i:' .. ref, ik)
    end
    stored = stored + 1
  end
end
return stored
`,
};

/**
 * KEYS: refs set, queue list, data hash, device's suites set. ARGV: suite, now.
 * Pops single-use KeyPackages oldest first, deleting expired ones on the way; falls back to the (kept)
 * last-resort one, deleting it if expired.
 * -> {"s" | "l", ref, not_after, KeyPackage, identity key} | false.
 */
export const TAKE_KEY_PACKAGE: RedisScript = {
  name: "take-key-package",
  lua: `
local now = tonumber(ARGV[2])
local found = false
while true do
  local ref = redis.call('LPOP', KEYS[2])
  if not ref then break end
  local r = redis.call('HMGET', KEYS[3], 'n:' .. ref, 'k:' .. ref, 'i:' .. ref)
  redis.call('HDEL', KEYS[3], 'n:' .. ref, 'k:' .. ref, 'i:' .. ref)
  redis.call('SREM', KEYS[1], ref)
  if r[1] and tonumber(r[1]) >= now then
    found = {'s', ref, r[1], r[2], r[3]}
    break
  end
end
if not found then
  local lr = redis.call('HMGET', KEYS[3], 'lr', 'lr:n', 'lr:k', 'lr:i')
  if lr[1] then
    if tonumber(lr[2]) >= now then
      found = {'l', lr[1], lr[2], lr[3], lr[4]}
    else
      redis.call('SREM', KEYS[1], lr[1])
      redis.call('HDEL', KEYS[3], 'lr', 'lr:n', 'lr:k', 'lr:i')
    end
  end
end
if redis.call('LLEN', KEYS[2]) == 0 and redis.call('HEXISTS', KEYS[3], 'lr') == 0 then redis.call('SREM', KEYS[4], ARGV[1]) end
return found
`,
};

/**
 * KEYS[1]: refs set; then per (device, suite): queue list, data hash, device's suites set.
 * ARGV: now, then per (device, suite): suite.
 * Deletes what expired (it can never be handed out again, and would otherwise pile up under the
 * per-device cap, which counts only valid KeyPackages) and counts the rest.
 * -> per (device, suite): {single-use count, 1 if a last-resort one is left}.
 */
export const KEY_PACKAGE_INVENTORY: RedisScript = {
  name: "key-package-inventory",
  lua: `
local now = tonumber(ARGV[1])
local out = {}
for i = 0, #ARGV - 2 do
  local queue, data, suites, suite = KEYS[2 + 3 * i], KEYS[3 + 3 * i], KEYS[4 + 3 * i], ARGV[2 + i]
  local available = 0
  for _, ref in ipairs(redis.call('LRANGE', queue, 0, -1)) do
    local n = redis.call('HGET', data, 'n:' .. ref)
    if n and tonumber(n) >= now then
      available = available + 1
    else
      redis.call('LREM', queue, 1, ref)
      redis.call('HDEL', data, 'n:' .. ref, 'k:' .. ref, 'i:' .. ref)
      redis.call('SREM', KEYS[1], ref)
    end
  end
  local lastResort = 0
  local lr = redis.call('HMGET', data, 'lr', 'lr:n')
  if lr[1] then
    if tonumber(lr[2]) >= now then
      lastResort = 1
    else
      redis.call('SREM', KEYS[1], lr[1])
      redis.call('HDEL', data, 'lr', 'lr:n', 'lr:k', 'lr:i')
    end
  end
  if available == 0 and lastResort == 0 then redis.call('SREM', suites, suite) end
  out[#out + 1] = {available, lastResort}
end
return out
`,
};

export const SCRIPTS = [CREATE_GROUP, APPEND, READ_LOG, CLOSE_GROUP, ACK, PUT_KEY_PACKAGES, TAKE_KEY_PACKAGE, KEY_PACKAGE_INVENTORY] as const;
