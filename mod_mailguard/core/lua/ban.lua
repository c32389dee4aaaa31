-- ban: a ban made by hand or by a local fallback, raised only.
--
-- ARGV: prefix, addr, expiry (Unix s, or "inf"), jail.
-- The score in P.."bans" only ever grows (a later or permanent ban is
-- kept); "ban <addr> <expiry> <jail>" is published with the expiry the
-- set holds afterwards, which is also returned (as text, "inf" when
-- permanent).  The ban history is not touched: it counts policy bans.
local bans = ARGV[1] .. 'bans'
local addr = ARGV[2]
redis.call('ZADD', bans, 'GT', ARGV[3], addr)
local score = redis.call('ZSCORE', bans, addr)
redis.call('PUBLISH', ARGV[1] .. 'events', 'ban ' .. addr .. ' ' .. score .. ' ' .. ARGV[4])
return score
