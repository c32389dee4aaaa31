-- list: the live bans.
--
-- ARGV: prefix, now (Unix s).  Drops members whose expiry is at or before
-- now (a ban expiring at now is over), then returns the rest as a flat
-- array member, score, ... (score as text, "inf" when permanent).
local bans = ARGV[1] .. 'bans'
redis.call('ZREMRANGEBYSCORE', bans, '-inf', ARGV[2])
return redis.call('ZRANGEBYSCORE', bans, '(' .. ARGV[2], '+inf', 'WITHSCORES')
