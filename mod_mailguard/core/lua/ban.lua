#!lua
-- ban: bans made by hand, by a local fallback or written back after Redis
-- lost them; raised only.
--
-- ARGV: prefix, jail, then one or more pairs addr, expiry (Unix s, or
-- "inf").  The score in P.."bans" only ever grows (a later or permanent
-- ban is kept).  A pair that changes the set is announced as
-- "ban <addr> <expiry> <jail>" with the expiry the set holds afterwards;
-- one that changes nothing (an equal or later ban already there) is not.
-- Returns, per pair, that expiry as text ("inf" when permanent).  The ban
-- history is not touched: it counts policy bans.
-- #include changelog.lua
local prefix = ARGV[1]
local jail = ARGV[2]
local bans = prefix .. 'bans'
local out = {}
for i = 3, #ARGV - 1, 2 do
    local addr = ARGV[i]
    local before = redis.call('ZSCORE', bans, addr)
    redis.call('ZADD', bans, 'GT', ARGV[i + 1], addr)
    local score = redis.call('ZSCORE', bans, addr)
    if not before then
        redis.call('INCR', prefix .. 'card')
    end
    if score ~= before then
        announce(prefix, 'ban ' .. addr .. ' ' .. score .. ' ' .. jail)
    end
    out[#out + 1] = score
end
return out
