package redisstore

import "github.com/redis/go-redis/v9"

// prelude is shared by the scripts (each is sent whole, so each carries it).
//
// hex encodes a name the way roomKey does in Go. nowms is the server's
// clock: reservations expire by it, so that nodes whose clocks disagree
// still agree on what has expired. extend raises a key's TTL to ms and never
// lowers it (a key without one gets one), so that a write never shortens
// what another write promised. fenced tells whether epoch is not the
// room's current activation: a tombstone holds none.
//
// entry reads one name of a kind's index: it prunes the room's expired
// reservations and returns its listing and the number of reservations still
// pending, or nil after dropping the name from the index when the room's
// key is gone (its TTL ran out: an abandoned room), it has no listing any
// more, or it was only ever reserved and its reservations all expired.
const prelude = `
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local function nowms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function extend(key, ms)
  local left = redis.call('PTTL', key)
  if left ~= -2 and left < ms then
    redis.call('PEXPIRE', key, ms)
  end
end
local function fenced(rk, epoch)
  local f = redis.call('HMGET', rk, 'epoch', 'tomb')
  return f[1] ~= epoch or f[2] ~= false
end
local function touch(rk, idx, name, ms)
  extend(rk, ms)
  if redis.call('HEXISTS', rk, 'listing') == 1 then
    redis.call('ZADD', idx, 0, name)
    extend(idx, ms)
  end
end
local function entry(idx, rk, zk, name, now)
  local f = redis.call('HMGET', rk, 'listing', 'owner', 'epoch')
  if not f[1] then
    redis.call('ZREM', idx, name)
    redis.call('DEL', zk)
    return nil, 0
  end
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)
  local pending = redis.call('ZCARD', zk)
  if not f[2] and pending == 0 then
    redis.call('ZREM', idx, name)
    if f[3] then
      redis.call('HDEL', rk, 'listing')
    else
      redis.call('DEL', rk)
    end
    return nil, 0
  end
  return f[1], pending
end
`

func script(body string) *redis.Script { return redis.NewScript(prelude + body) }

// claimScript: KEYS room, index; ARGV owner, force ("1" or ""), room TTL
// (ms), name. Returns {0, holder} when another owner's activation holds the
// room, else {1, epoch, snapshot or nil}.
//
// A room that has no epoch (new, or forgotten by Redis) starts at the
// server's clock in microseconds, so that its epochs stay above those of
// any activation from before the loss (see the package documentation); the
// string is built whole, since a Lua number would round it.
var claimScript = script(`
local rk = KEYS[1]
local f = redis.call('HMGET', rk, 'epoch', 'owner', 'active', 'snap')
if f[3] == '1' and f[2] ~= ARGV[1] and ARGV[2] ~= '1' then
  return {0, f[2]}
end
if f[1] then
  redis.call('HINCRBY', rk, 'epoch', 1)
else
  local t = redis.call('TIME')
  redis.call('HSET', rk, 'epoch', t[1] .. string.format('%06d', tonumber(t[2])))
end
redis.call('HSET', rk, 'owner', ARGV[1], 'active', '1')
redis.call('HDEL', rk, 'tomb')
touch(rk, KEYS[2], ARGV[4], tonumber(ARGV[3]))
return {1, redis.call('HGET', rk, 'epoch'), f[4]}
`)

// saveScript: KEYS room, index; ARGV epoch, snapshot, room TTL (ms), name.
// Returns 0 when fenced, 1 when saved.
var saveScript = script(`
if fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'snap', ARGV[2])
touch(KEYS[1], KEYS[2], ARGV[4], tonumber(ARGV[3]))
return 1
`)

// releaseScript: KEYS room, index; ARGV epoch, room TTL (ms), name.
// Returns 0 when fenced, 1 when released.
var releaseScript = script(`
if fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'active', '0')
touch(KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[2]))
return 1
`)

// publishScript: KEYS room, index, reservations; ARGV epoch, room TTL (ms),
// name, listing JSON, then the reservations used. Returns 0 when fenced, 1
// when published.
var publishScript = script(`
if fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'listing', ARGV[4])
if #ARGV > 4 then
  redis.call('ZREM', KEYS[3], unpack(ARGV, 5))
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', nowms())
touch(KEYS[1], KEYS[2], ARGV[3], tonumber(ARGV[2]))
return 1
`)

// deleteScript: KEYS room, index, reservations; ARGV epoch, tombstone TTL
// (ms), name. Leaves the epoch alone in the room's hash, as a tombstone.
// Returns 0 when fenced, 1 when deleted.
var deleteScript = script(`
if fenced(KEYS[1], ARGV[1]) then return 0 end
redis.call('HDEL', KEYS[1], 'owner', 'active', 'snap', 'listing')
redis.call('HSET', KEYS[1], 'tomb', '1')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[3])
return 1
`)

// listScript: KEYS index; ARGV room key prefix, reservations key prefix.
// Returns {dropped, name, listing, name, listing, ...} in name order.
var listScript = script(`
local now, out, dropped = nowms(), {0}, 0
for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = hex(name)
  local l = entry(KEYS[1], ARGV[1] .. h, ARGV[2] .. h, name, now)
  if l then
    out[#out + 1] = name
    out[#out + 1] = l
  else
    dropped = dropped + 1
  end
end
out[1] = dropped
return out
`)

// reserveScript: KEYS index; ARGV room key prefix, reservations key prefix,
// new name, new listing JSON, reservation TTL (ms), reservation, filter
// JSON (decoded by cjson, as the labels are, so that both read the same
// strings whatever JSON made of their bytes). Returns {dropped, name}, or {dropped, false}
// when the new name is taken.
//
// It picks, among the listed open rooms whose label has the filter, those
// whose players and pending reservations leave a seat (max 0: no bound),
// the fullest, then the first by name (ZRANGE of equal scores is in byte
// order, and only a strictly fuller room replaces the one chosen).
var reserveScript = script(`
local idx, rp, zp = KEYS[1], ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[5])
local filter = cjson.decode(ARGV[7])
if type(filter) ~= 'table' then filter = {} end
local now, dropped = nowms(), 0
local best, bestTaken = nil, -1
for _, name in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  local h = hex(name)
  local lj, pending = entry(idx, rp .. h, zp .. h, name, now)
  if not lj then
    dropped = dropped + 1
  else
    local ok, l = pcall(cjson.decode, lj)
    if ok and type(l) == 'table' and l.open == true then
      local label = l.label
      if type(label) ~= 'table' then label = {} end
      local match = true
      for k, v in pairs(filter) do
        if label[k] ~= v then match = false break end
      end
      local taken = (tonumber(l.players) or 0) + pending
      local max = tonumber(l.max) or 0
      if match and (max <= 0 or taken < max) and taken > bestTaken then
        best, bestTaken = name, taken
      end
    end
  end
end
if not best then
  best = ARGV[3]
  local rk = rp .. hex(best)
  local f = redis.call('HMGET', rk, 'listing', 'owner')
  if f[1] or f[2] then return {dropped, false} end
  redis.call('HSET', rk, 'listing', ARGV[4])
  redis.call('ZADD', idx, 0, best)
end
local h = hex(best)
local zk = zp .. h
redis.call('ZADD', zk, now + ttl, ARGV[6])
extend(zk, ttl)
extend(rp .. h, ttl)
extend(idx, ttl)
return {dropped, best}
`)
