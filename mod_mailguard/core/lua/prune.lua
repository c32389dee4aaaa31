#!lua flags=allow-oom
-- prune: drop bans that have ended.
--
-- ARGV: prefix, now (Unix s), most.  Removes at most `most` members whose
-- expiry is at or before now (a ban expiring at now is over), so one call
-- stays short whatever the size of the set; returns how many.  Followers
-- ignore ended bans by their expiry, so this is not announced.  Allowed
-- when Redis is out of memory: it only frees.
local bans = ARGV[1] .. 'bans'
local gone = redis.call('ZRANGE', bans, '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
if #gone == 0 then
    return 0
end
redis.call('ZREM', bans, unpack(gone))
redis.call('DECRBY', ARGV[1] .. 'card', #gone)
return #gone
