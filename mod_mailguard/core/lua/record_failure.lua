-- record_failure: count failed logins and ban on reaching maxretry.
--
-- ARGV: prefix, jail, maxretry, findtime (s), bantime (s), increment (0/1),
--       factor, maxtime (s), then one or more pairs: addr, now_ms.
-- Key names are built here from the prefix rather than passed as KEYS:
-- the store targets one Redis instance (not Cluster), and a batch touches
-- keys that are only known per pair.
--
-- Per pair, with P = prefix and W = P.."fail:"..jail..":"..addr:
--   * W is an exact sliding window: a failure at t counts for failures at
--     t' with t <= t' < t + findtime, so entries with a score at or below
--     now_ms - findtime*1000 are dropped first.  W expires findtime after
--     its newest entry.
--   * On reaching maxretry the window is cleared and the address banned:
--     duration = bantime, or with increment bantime * factor^(previous
--     bans) capped at maxtime and never below bantime (the same rule as
--     mg_policy_ban_seconds); expiry = floor(now_ms/1000) + duration.
--     An address that already holds a live ban is not banned again (those
--     failures were in flight when it was made), which keeps concurrent
--     bursts from escalating the history.
--   * The ban only ever raises the score in P.."bans" (+inf stays), the
--     history P.."history:"..addr {count, last} is kept for
--     max(30 days, 2 * maxtime) after the last ban, far beyond the ban
--     itself, and "ban <addr> <expiry> <jail>" is published on P.."events"
--     with the expiry the ban set now holds.
--
-- Returns a flat array, per pair: count, expiry ("0" when no ban, "inf"
-- when permanent), bans in the history including this one (0 when no ban).
local prefix = ARGV[1]
local jail = ARGV[2]
local maxretry = tonumber(ARGV[3])
local findms = tonumber(ARGV[4]) * 1000
local bantime = tonumber(ARGV[5])
local increment = ARGV[6] == '1'
local factor = tonumber(ARGV[7])
local maxtime = tonumber(ARGV[8])
local bans = prefix .. 'bans'
local events = prefix .. 'events'
local wprefix = prefix .. 'fail:' .. jail .. ':'
local hprefix = prefix .. 'history:'
local keep = 30 * 86400
if 2 * maxtime > keep then keep = 2 * maxtime end

local out = {}
local n = 0
for i = 9, #ARGV - 1, 2 do
    local addr = ARGV[i]
    local nowtxt = ARGV[i + 1]
    local now = tonumber(nowtxt)
    local w = wprefix .. addr
    redis.call('ZREMRANGEBYSCORE', w, '-inf', string.format('%.0f', now - findms))
    -- Members are unique: the time itself, or "time:k" when that time is
    -- taken.  Scores leave the window all at once, so the members sharing
    -- a score are always exactly {t, t:1, ..., t:k-1}.
    if redis.call('ZADD', w, nowtxt, nowtxt) == 0 then
        local k = redis.call('ZCOUNT', w, nowtxt, nowtxt)
        redis.call('ZADD', w, nowtxt, nowtxt .. ':' .. k)
    end
    local count = redis.call('ZCARD', w)
    local expiry = '0'
    local hcount = 0
    if count >= maxretry then
        redis.call('DEL', w)
        local nows = math.floor(now / 1000)
        local cur = redis.call('ZSCORE', bans, addr)
        if not cur or (cur ~= 'inf' and tonumber(cur) <= nows) then
            local h = hprefix .. addr
            local prev = tonumber(redis.call('HGET', h, 'count') or '0') or 0
            local d = bantime
            if increment then
                d = bantime * (factor ^ prev)
                if d > maxtime then d = maxtime end
                if d < bantime then d = bantime end
                d = math.floor(d)
            end
            local exp = nows + d
            local score = string.format('%.0f', exp)
            -- the present score (if any) has expired: this raises it
            redis.call('ZADD', bans, 'GT', score, addr)
            hcount = redis.call('HINCRBY', h, 'count', 1)
            redis.call('HSET', h, 'last', string.format('%.0f', nows))
            redis.call('EXPIRE', h, keep)
            redis.call('PUBLISH', events, 'ban ' .. addr .. ' ' .. score .. ' ' .. jail)
            expiry = score
        end
    else
        redis.call('PEXPIRE', w, findms)
    end
    out[n + 1] = count
    out[n + 2] = expiry
    out[n + 3] = hcount
    n = n + 3
end
return out
