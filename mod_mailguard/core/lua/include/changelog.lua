-- The change log, shared by every script that bans or unbans.
--
-- Each change is appended to the stream P.."log" (fields s = sequence
-- number, e = the same text as the P.."events" message), in the order
-- Redis applied it, with a number from P.."logseq": a follower that reads
-- anything but its last number + 1 knows it missed something and reads
-- the whole set again.  P.."card" is kept equal to ZCARD P.."bans" by the
-- scripts, so a ZCARD that differs reveals a bare ZADD or ZREM.
-- The stream keeps about MG_LOG_KEEP changes: a follower away for longer
-- than that many changes takes a snapshot instead of catching up.
local MG_LOG_KEEP = 100000

local function changelog(prefix, text)
    local seq = redis.call('INCR', prefix .. 'logseq')
    redis.call('XADD', prefix .. 'log', 'MAXLEN', '~', MG_LOG_KEEP, '*', 's', seq, 'e', text)
end

-- One change: published for subscribers and logged for followers.
local function announce(prefix, text)
    redis.call('PUBLISH', prefix .. 'events', text)
    changelog(prefix, text)
end
