package redisstore

import "github.com/redis/go-redis/v9"

// The scripts name a room in its kind's indexes by its hex-encoded name
// (its "member"), and build its keys by appending the member to a prefix
// given in ARGV. Every index entry is scored by the time its room's data
// expires (ms, Redis server clock), so that an abandoned room leaves its
// indexes by score, at the cost of the rooms that expired only.
//
// prelude is shared by the scripts (each is sent whole, so each carries it):
//
//   - nowms is the server's clock: nodes whose clocks disagree still agree on
//     what has expired.
//   - extend raises a key's TTL to ms and never lowers it (a key without one
//     gets one), so that a write never shortens what another promised.
//   - fenced returns 0 when epoch is not the room's current activation (a
//     tombstone holds none), -1 when Redis holds nothing of the room (its
//     data was lost or expired: rooms.ErrLost), false when epoch may write.
//   - touch is what every write of an activation does: the room's data
//     lives RoomTTL from now, and so do its entries in the indexes, if it is
//     listed (the free-seat index only keeps the rooms already in it: that
//     one changes with the listing, in Publish).
//   - prune drops from the indexes the rooms whose data expired (at most a
//     thousand per call, to bound the script; the rest go next time).
//   - entry reads a room found in an index: its listing, and its pending
//     reservations when asked or when it has no owner. It drops the room from
//     the indexes, and returns nil, when its key is gone (expired, evicted),
//     it has no listing, or it was only ever reserved and its reservations
//     all expired (then its key goes too, or its listing if it is a
//     tombstone).
//   - before compares names by bytes, as Go does: Lua's < follows the
//     server's locale.
const prelude = `
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
  if f[1] == false then return -1 end
  if f[1] ~= epoch or f[2] ~= false then return 0 end
  return false
end
local function touch(rk, list, open, member, ms)
  extend(rk, ms)
  if redis.call('HEXISTS', rk, 'listing') == 1 then
    local expiry = nowms() + ms
    redis.call('ZADD', list, 'GT', expiry, member)
    redis.call('ZADD', open, 'XX', 'GT', expiry, member)
    extend(list, ms)
    extend(open, ms)
  end
end
local function prune(list, open, zp, now)
  local gone = redis.call('ZRANGEBYSCORE', list, '-inf', '(' .. now, 'LIMIT', 0, 1000)
  if #gone > 0 then
    for _, m in ipairs(gone) do redis.call('DEL', zp .. m) end
    redis.call('ZREM', list, unpack(gone))
  end
  redis.call('ZREMRANGEBYSCORE', open, '-inf', '(' .. now)
  return #gone
end
local function drop(list, open, zk, member)
  redis.call('ZREM', list, member)
  redis.call('ZREM', open, member)
  redis.call('DEL', zk)
end
local function entry(list, open, rk, zk, member, now, count)
  local f = redis.call('HMGET', rk, 'listing', 'owner', 'epoch')
  if not f[1] then
    drop(list, open, zk, member)
    return nil, 0
  end
  local pending = 0
  if count or not f[2] then
    pending = redis.call('ZCOUNT', zk, '(' .. now, '+inf')
  end
  if not f[2] and pending == 0 then
    drop(list, open, zk, member)
    if f[3] then
      redis.call('HDEL', rk, 'listing')
    else
      redis.call('DEL', rk)
    end
    return nil, 0
  end
  return f[1], pending
end
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
`

func script(body string) *redis.Script { return redis.NewScript(prelude + body) }

// claimScript: KEYS room, list, open; ARGV owner, force ("1" or ""), room
// TTL (ms), member. Returns {0, holder} when another owner's activation
// holds the room, else {1, epoch, snapshot or nil}.
//
// A room that has no epoch (new, or forgotten by Redis) starts at the
// server's clock in microseconds, so that its epochs stay above those of
// any activation from before a loss (see the package documentation); the
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
touch(rk, KEYS[2], KEYS[3], ARGV[4], tonumber(ARGV[3]))
return {1, redis.call('HGET', rk, 'epoch'), f[4]}
`)

// saveScript: KEYS room, list, open; ARGV epoch, snapshot, room TTL (ms),
// member. Returns 0 when fenced, -1 when lost, 1 when saved.
var saveScript = script(`
local fc = fenced(KEYS[1], ARGV[1])
if fc then return fc end
redis.call('HSET', KEYS[1], 'snap', ARGV[2])
touch(KEYS[1], KEYS[2], KEYS[3], ARGV[4], tonumber(ARGV[3]))
return 1
`)

// releaseScript: KEYS room, list, open; ARGV epoch, room TTL (ms), member.
// Returns 0 when fenced, -1 when lost, 1 when released.
var releaseScript = script(`
local fc = fenced(KEYS[1], ARGV[1])
if fc then return fc end
redis.call('HSET', KEYS[1], 'active', '0')
touch(KEYS[1], KEYS[2], KEYS[3], ARGV[3], tonumber(ARGV[2]))
return 1
`)

// publishScript: KEYS room, list, open, reservations; ARGV epoch, room TTL
// (ms), member, listing JSON, "1" if the listing has a free seat (open,
// and players under max), then the reservations used. Returns 0 when
// fenced, -1 when lost, 1 when published.
var publishScript = script(`
local fc = fenced(KEYS[1], ARGV[1])
if fc then return fc end
local ms = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'listing', ARGV[4])
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[3], 'GT', nowms() + ms, ARGV[3])
else
  redis.call('ZREM', KEYS[3], ARGV[3])
end
if #ARGV > 5 then
  redis.call('ZREM', KEYS[4], unpack(ARGV, 6))
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', nowms())
touch(KEYS[1], KEYS[2], KEYS[3], ARGV[3], ms)
return 1
`)

// deleteScript: KEYS room, list, open, reservations; ARGV epoch, tombstone
// TTL (ms), member. Leaves the epoch alone in the room's hash, as a
// tombstone. Returns 0 when fenced, -1 when lost, 1 when deleted.
var deleteScript = script(`
local fc = fenced(KEYS[1], ARGV[1])
if fc then return fc end
redis.call('HDEL', KEYS[1], 'owner', 'active', 'snap', 'listing')
redis.call('HSET', KEYS[1], 'tomb', '1')
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
drop(KEYS[2], KEYS[3], KEYS[4], ARGV[3])
return 1
`)

// listScript: KEYS list, open; ARGV room key prefix, reservations key
// prefix. Returns {dropped, member, listing, member, listing, ...}.
var listScript = script(`
local list, open, rp, zp = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local now = nowms()
local dropped = prune(list, open, zp, now)
local out = {0}
for _, m in ipairs(redis.call('ZRANGE', list, 0, -1)) do
  local l = entry(list, open, rp .. m, zp .. m, m, now, false)
  if l then
    out[#out + 1] = m
    out[#out + 1] = l
  else
    dropped = dropped + 1
  end
end
out[1] = dropped
return out
`)

// reserveScript: KEYS list, open; ARGV room key prefix, reservations key
// prefix, new member, new listing JSON, reservation TTL (ms), reservation,
// filter JSON (decoded by cjson, as the labels are, so that both read the
// same strings whatever JSON made of their bytes). Returns {dropped,
// member}, or {dropped, false} when the new name is taken.
//
// It reads the rooms of the free-seat index only (listed open rooms whose
// players are under max, as last published), and picks among those whose
// label has the filter and whose players and pending reservations leave a
// seat (max 0: no bound) the fullest, then the first by name.
var reserveScript = script(`
local list, open, rp, zp = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local ttl = tonumber(ARGV[5])
local filter = cjson.decode(ARGV[7])
if type(filter) ~= 'table' then filter = {} end
local now = nowms()
local dropped = prune(list, open, zp, now)
local best, bestTaken = nil, -1
for _, m in ipairs(redis.call('ZRANGE', open, 0, -1)) do
  local lj, pending = entry(list, open, rp .. m, zp .. m, m, now, true)
  if not lj then
    dropped = dropped + 1
  else
    local ok, l = pcall(cjson.decode, lj)
    if ok and type(l) == 'table' and l.open == true then
      local taken = (tonumber(l.players) or 0) + pending
      local max = tonumber(l.max) or 0
      if (max <= 0 or taken < max) and (taken > bestTaken or (taken == bestTaken and before(m, best))) then
        local label = l.label
        if type(label) ~= 'table' then label = {} end
        local match = true
        for k, v in pairs(filter) do
          if label[k] ~= v then match = false break end
        end
        if match then best, bestTaken = m, taken end
      end
    end
  end
end
local expiry = now + ttl
if not best then
  best = ARGV[3]
  local f = redis.call('HMGET', rp .. best, 'listing', 'owner')
  if f[1] or f[2] then return {dropped, false} end
  redis.call('HSET', rp .. best, 'listing', ARGV[4])
  redis.call('ZADD', open, 'GT', expiry, best)
end
local zk = zp .. best
redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)
redis.call('ZADD', zk, expiry, ARGV[6])
redis.call('ZADD', list, 'GT', expiry, best)
redis.call('ZADD', open, 'XX', 'GT', expiry, best)
for _, k in ipairs({zk, rp .. best, list, open}) do extend(k, ttl) end
return {dropped, best}
`)
