#!lua flags=no-writes
-- check: where the change log stands, in one atomic read.
--
-- ARGV: prefix, now (Unix s).  Returns {logseq, id of the last entry
-- ("0-0" when none), its sequence number (0 when none), live bans (expiry
-- after now), ZCARD P.."bans", P.."card" (-1 when missing)}.  A follower
-- compares these with what it has applied: a ZCARD other than the card
-- means the set was edited by hand (the resync script then announces it);
-- a logseq below its own means Redis lost data.  Every command here is
-- O(1) or O(log N).
local prefix = ARGV[1]
local bans = prefix .. 'bans'
local seq = tonumber(redis.call('GET', prefix .. 'logseq') or '0')
local id, lastseq = '0-0', 0
local last = redis.call('XREVRANGE', prefix .. 'log', '+', '-', 'COUNT', 1)
if #last > 0 then
    id = last[1][1]
    local f = last[1][2]
    for i = 1, #f - 1, 2 do
        if f[i] == 's' then lastseq = tonumber(f[i + 1]) or 0 end
    end
end
local live = redis.call('ZCOUNT', bans, '(' .. ARGV[2], '+inf')
local card = tonumber(redis.call('GET', prefix .. 'card') or '-1')
return {seq, id, lastseq, live, redis.call('ZCARD', bans), card}
