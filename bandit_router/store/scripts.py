"""The Redis store's Lua scripts: each change that must be atomic, with why."""

from __future__ import annotations

from bandit_router.store.lease import FENCE_CHECK

# Writes a decision unless its id is taken; answers the existing summary when it is, so a
# retried Route gets the first decision and no second one is made. With a quota (ARGV[7] > 0), refuses a
# tenant holding that many decisions still within their reward wait: its set of them (KEYS[4], by deadline)
# sheds the ones past their deadline first, so it heals itself whatever happened to them. In one script, so
# concurrent Routes cannot both take the last place.
PUT_DECISION = """
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
local quota = tonumber(ARGV[7])
if quota > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[8])
  local held = redis.call('ZCARD', KEYS[4])
  if held >= quota then return {'quota', held} end
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[6])
return false
"""

# Takes the pending decision and appends its learning event in one atomic step, so a reward is
# either learned exactly once or not accepted at all: never taken and then lost. What the gateway metered of the
# call goes with it (the event carries it); a small marker says for the retention that it was rewarded. A decision
# already rewarded has its marker written again as it was: a write, so that a WAIT after it on this connection
# covers the first reward's writes too (a retry of a reward whose replication was not yet confirmed).
TAKE_AND_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local done = redis.call('GET', KEYS[2])
  if done then
    redis.call('SET', KEYS[2], done, 'KEEPTTL')
    return {'rewarded', done}
  end
  return {'gone', ''}
end
local deadline = redis.call('ZSCORE', KEYS[4], ARGV[4])
if deadline and tonumber(deadline) < tonumber(ARGV[2]) then return {'gone', ''} end
local id = redis.call('XADD', KEYS[3], '*', 'event', ARGV[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('ZREM', KEYS[5], ARGV[4])
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[2], id .. ' ' .. ARGV[2], 'PX', ARGV[3])
return {'ok', id}
"""

# Expires one decision whose deadline has passed, appending its default-reward event if one is given;
# atomic with the take above, so a decision is either rewarded or expired, never both. A small marker holding
# the deadline says for the retention that it expired, and when.
EXPIRE = """
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) >= tonumber(ARGV[2]) then return false end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[6])
redis.call('SET', KEYS[5], deadline, 'PX', ARGV[4])
redis.call('INCR', KEYS[4])
if ARGV[3] ~= '' then return redis.call('XADD', KEYS[3], '*', 'event', ARGV[3]) end
return 'dropped'
"""


# Forgets a pending decision unlearned, with its summary and what was metered of its call; nothing when it is no
# longer pending (rewarded, expired). One script, so a concurrent Reward either takes it first or finds it gone.
DROP = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
return 1
"""


# The learner's fenced reads and writes (see store/lease.py). The read delivers the next events into the group
# only for the lease's holder (a stale learner could otherwise take events the holder then never sees); with none
# new, it answers the stream's last id, from which a plain blocking XREAD (no group state) waits for more.
READ = (
    FENCE_CHECK
    + """
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[2], ARGV[5])
if reply and #reply[1][2] > 0 then return {reply[1][2], ''} end
local info = redis.call('XINFO', 'STREAM', KEYS[2])
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then return {{}, info[i + 1]} end
end
return {{}, '0-0'}
"""
)

# Acknowledges learned events and trims the stream before ARGV[3], for the lease's holder only.
ACKNOWLEDGE = (
    FENCE_CHECK
    + """
for i = 4, #ARGV, 1000 do
  redis.call('XACK', KEYS[2], ARGV[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('XTRIM', KEYS[2], 'MINID', ARGV[3])
return 1
"""
)

# Stores a snapshot (KEYS[2]) and its version (KEYS[3]) for the lease's holder only; with a hash (KEYS[4]), replaces
# its fields with the pairs from ARGV[5] on (each tenant's parts of a served snapshot, apart so that a replica fetches
# only its tenants'); with a channel (ARGV[4]), announces the version there.
SAVE = (
    FENCE_CHECK
    + """
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[3])
if KEYS[4] then
  redis.call('DEL', KEYS[4])
  for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
end
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[3]) end
return 1
"""
)
