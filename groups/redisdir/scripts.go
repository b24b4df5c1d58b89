package redisdir

import "github.com/redis/go-redis/v9"

// The scripts build keys the way keys.go does; ARGV[1] is always the prefix.
// A connection leaves its node's set once it has no group and no user left.

// joinScript: KEYS group hash, conn groups, node set; ARGV prefix, id, b64
// group, member JSON. Returns 1 if the member is new, 0 if updated.
var joinScript = redis.NewScript(`
local new = redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return new
`)

// leaveScript: KEYS group hash, conn groups, conn users, node set; ARGV
// prefix, id, b64 group. Returns 1 if the member was there.
var leaveScript = redis.NewScript(`
local n = redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[2], KEYS[3]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
end
return n
`)

// leaveAllScript: KEYS conn groups, conn users, node set; ARGV prefix, id.
// Returns the b64 names of the groups id was a member of.
var leaveAllScript = redis.NewScript(`
local P, id = ARGV[1], ARGV[2]
local left = {}
for _, g in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HDEL', P .. 'group:{' .. g .. '}:members', id) == 1 then
    left[#left + 1] = g
  end
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], id)
end
return left
`)

// addUserScript: KEYS user set, conn users, node set; ARGV prefix, id, b64 user.
var addUserScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[2])
return 1
`)

// removeUserScript: KEYS user set, conn users, conn groups, node set; ARGV
// prefix, id, b64 user.
var removeUserScript = redis.NewScript(`
redis.call('SREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[2], KEYS[3]) == 0 then
  redis.call('SREM', KEYS[4], ARGV[2])
end
return 1
`)

// syncScript sets connections to exactly the given state, each atomically:
// it drops every group and user entry Redis holds for the connection and
// writes the new ones. KEYS node set, node owner; ARGV prefix, expected
// owner, then per connection:
//
//	id, n groups, (b64 group, member JSON) × n, m users, b64 user × m
//
// With an expected owner ("" for none), it does nothing and returns {-1, {}}
// when the node's owner key names another one: a newer process holds the
// address, and its connections are not the ones to remove.
// With no groups and no users the connection is removed. Returns {removed,
// left}: how many of the connections left the node's set (were removed by
// this call), and for every group membership this call ended (one the
// connection had before and not after) the triple id, b64 group, member JSON
// it had. Several callers may sync one connection at once; each membership
// is reported by the one call that ended it.
var syncScript = redis.NewScript(`
local P = ARGV[1]
if ARGV[2] ~= '' then
  local owner = redis.call('GET', KEYS[2])
  if owner and owner ~= ARGV[2] then
    return {-1, {}}
  end
end
local i, removed, left = 3, 0, {}
while i <= #ARGV do
  local id = ARGV[i]
  local cg = P .. 'conn:{' .. id .. '}:groups'
  local cu = P .. 'conn:{' .. id .. '}:users'
  local before = {}
  for _, g in ipairs(redis.call('SMEMBERS', cg)) do
    local key = P .. 'group:{' .. g .. '}:members'
    local v = redis.call('HGET', key, id)
    if v then
      before[g] = v
      redis.call('HDEL', key, id)
    end
  end
  for _, u in ipairs(redis.call('SMEMBERS', cu)) do
    redis.call('SREM', P .. 'user:{' .. u .. '}:conns', id)
  end
  redis.call('DEL', cg, cu)
  local ng = tonumber(ARGV[i + 1])
  i = i + 2
  for _ = 1, ng do
    redis.call('HSET', P .. 'group:{' .. ARGV[i] .. '}:members', id, ARGV[i + 1])
    redis.call('SADD', cg, ARGV[i])
    before[ARGV[i]] = nil
    i = i + 2
  end
  for g, v in pairs(before) do
    left[#left + 1] = id
    left[#left + 1] = g
    left[#left + 1] = v
  end
  local nu = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, nu do
    redis.call('SADD', P .. 'user:{' .. ARGV[i] .. '}:conns', id)
    redis.call('SADD', cu, ARGV[i])
    i = i + 1
  end
  if ng + nu > 0 then
    redis.call('SADD', KEYS[1], id)
  else
    removed = removed + redis.call('SREM', KEYS[1], id)
  end
end
return {removed, left}
`)

// forgetOwnerScript: KEYS node owner; ARGV owner. Deletes the key if it
// names that owner.
var forgetOwnerScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// epochScript: KEYS epoch key; ARGV prefix, a fresh value stored if there
// is none. Returns the stored value.
var epochScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
`)
