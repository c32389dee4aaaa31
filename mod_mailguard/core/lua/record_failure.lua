#!lua
-- record_failure: count failed logins and ban on reaching maxretry.
--
-- ARGV: prefix, jail, maxretry, findtime (s), bantime (s), increment (0/1),
--       factor, maxtime (s), then one or more groups: addr, k, and k
--       triples id, now_ms, cutoff_ms (k failures of one address, in the
--       order they happened; id = the failure's identity, "" when it has
--       none; cutoff_ms = now_ms - findtime*1000, formatted by the caller
--       because number formatting is a large part of a script's cost in
--       Redis 7.0's Lua).
-- Key names are built here from the prefix rather than passed as KEYS:
-- the store targets one Redis instance (not Cluster), and a batch touches
-- keys that are only known per group.
--
-- Per failure, with P = prefix and W = P.."fail:"..jail..":"..addr:
--   * W is an exact sliding window (a sorted set, score = time in ms): a
--     failure at t counts for failures at t' with t <= t' < t + findtime,
--     so entries at or below now_ms - findtime*1000 are dropped before the
--     new one is added and counted.  Members are unique: the time itself,
--     or "time:k" when k entries already share that time (entries leave
--     by score, all of one time at once, so those are always t, t:1, ...).
--     W expires findtime after it was last written.
--   * On reaching maxretry the window is cleared and the address banned:
--     duration = bantime, or with increment bantime * factor^(previous
--     bans) capped at maxtime and never below bantime (the same rule as
--     mg_policy_ban_seconds); expiry = floor(now_ms/1000) + duration.
--     An address that already holds a live ban is not banned again (those
--     failures were in flight when it was made), which keeps concurrent
--     bursts from escalating the history.
--   * A ban only ever raises the score in P.."bans" (+inf stays), the
--     history P.."history:"..addr {count, last, by} is kept for
--     max(30 days, 2 * maxtime) after the last ban, far beyond the ban
--     itself (by: the identity of the failure that made the last ban),
--     and "ban <addr> <expiry> <jail>" is published on P.."events" and
--     appended to the change log (include/changelog.lua).
-- A lone failure is pruned, added, counted and expired in place (four
-- commands).  A group of k > 1 failures of one address reads its window
-- once, applies them in order here and writes back only the change, so it
-- costs about what one failure costs; the outcome is that of k single
-- calls.  (Redis's per-command cost inside a script is what bounds
-- ingest: a string window read and written whole measured no cheaper.)
--
-- Returns a flat array, per failure in ARGV order: count, expiry ("0" when
-- no ban), bans in the history including this one (0 when no ban), and 1
-- when the failure was a duplicate (already counted: see duplicates()).
-- A duplicate reports expiry "0" and no bans, unless it is the very
-- failure that made the address's live ban: then that ban's expiry and
-- history count, so a caller whose first call timed out but ran learns of
-- the ban it made (count is then maxretry, the count that made it).
-- #include changelog.lua
local function int(x)
    return string.format('%.0f', x)
end

local argv = ARGV
local nargs = #argv
local call = redis.call
local prefix = ARGV[1]
local jail = ARGV[2]
local maxretry = tonumber(ARGV[3])
local findms = tonumber(ARGV[4]) * 1000
local bantime = tonumber(ARGV[5])
local increment = ARGV[6] == '1'
local factor = tonumber(ARGV[7])
local maxtime = tonumber(ARGV[8])
local bans = prefix .. 'bans'
local wprefix = prefix .. 'fail:' .. jail .. ':'
local hprefix = prefix .. 'history:'
local findtxt = int(findms)
local keep = 30 * 86400
if 2 * maxtime > keep then keep = 2 * maxtime end

-- Ban addr at now (ms) for failure id unless it holds a live ban: expiry
-- text, bans.
local function ban(addr, now, id)
    local nows = math.floor(now / 1000)
    local cur = call('ZSCORE', bans, addr)
    if cur and (cur == 'inf' or tonumber(cur) > nows) then
        return '0', 0
    end
    local h = hprefix .. addr
    local prev = tonumber(call('HGET', h, 'count') or '0') or 0
    local d = bantime
    if increment then
        d = bantime * (factor ^ prev)
        if d > maxtime then d = maxtime end
        if d < bantime then d = bantime end
        d = math.floor(d)
    end
    local score = int(nows + d)
    -- the present score (if any) has expired: this raises it
    if call('ZADD', bans, 'GT', score, addr) == 1 then
        call('INCR', prefix .. 'card')
    end
    local hcount = call('HINCRBY', h, 'count', 1)
    if id ~= '' then
        call('HSET', h, 'last', int(nows), 'by', id)
    else
        call('HSET', h, 'last', int(nows))
        call('HDEL', h, 'by')
    end
    call('EXPIRE', h, keep)
    announce(prefix, 'ban ' .. addr .. ' ' .. score .. ' ' .. jail)
    return score, hcount
end

-- cmd w list..., at most 1000 list items per call so that unpack stays
-- within Lua's stack whatever maxretry is.
local function batched(cmd, w, list)
    local x = 1
    while x <= #list do
        local last = math.min(#list, x + 999)
        call(cmd, w, unpack(list, x, last))
        x = last + 1
    end
end

-- Add score/member pairs to the sorted set k (a window or its seen
-- identities), which then lives findtime from now.
local function add_for_findtime(k, pairs)
    if #pairs > 0 then
        batched('ZADD', k, pairs)
        call('PEXPIRE', k, findtxt)
    end
end

local out = {}
local n = 0

local function result(count, expiry, hcount, dup)
    out[n + 1] = count
    out[n + 2] = expiry
    out[n + 3] = hcount
    out[n + 4] = dup
    n = n + 4
end

-- One failure: prune, add, count and expire in place.
local function one(addr, w, nowtxt, cuttxt, id)
    call('ZREMRANGEBYSCORE', w, '-inf', cuttxt)
    if call('ZADD', w, nowtxt, nowtxt) == 0 then
        local same = call('ZCOUNT', w, nowtxt, nowtxt)
        call('ZADD', w, nowtxt, nowtxt .. ':' .. same)
    end
    local count = call('ZCARD', w)
    local expiry, hcount = '0', 0
    if count >= maxretry then
        call('DEL', w)
        expiry, hcount = ban(addr, tonumber(nowtxt), id)
    else
        call('PEXPIRE', w, findtxt)
    end
    result(count, expiry, hcount, 0)
end

-- k failures of one address (times, cutoffs, ids [1..k]): the window is
-- read whole, the failures applied here in order exactly as one() would
-- apply them, and only the change is written back.
local function group(addr, w, times, cuts, ids, k)
    local cur = call('ZRANGE', w, 0, -1, 'WITHSCORES')
    local mem, sc, st, new = {}, {}, {}, {}
    local m = 0
    for j = 1, #cur, 2 do
        m = m + 1
        mem[m], st[m], sc[m], new[m] = cur[j], cur[j + 1], tonumber(cur[j + 1]), false
    end
    local gone = {}         -- stored members pruned on the way
    local cleared = false   -- a ban emptied the window
    for j = 1, k do
        local nowtxt = times[j]
        local now = tonumber(nowtxt)
        local cutoff = now - findms     -- numbers here: the text is for one()
        local kept, same = 0, 0
        for x = 1, m do
            if sc[x] > cutoff then
                kept = kept + 1
                mem[kept], sc[kept], st[kept], new[kept] = mem[x], sc[x], st[x], new[x]
                if sc[x] == now then same = same + 1 end
            elseif not new[x] then
                gone[#gone + 1] = mem[x]
            end
        end
        for x = kept + 1, m do
            mem[x], sc[x], st[x], new[x] = nil, nil, nil, nil
        end
        m = kept + 1
        sc[m], st[m], new[m] = now, nowtxt, true
        if same == 0 then mem[m] = nowtxt else mem[m] = nowtxt .. ':' .. same end
        local expiry, hcount = '0', 0
        local count = m
        if count >= maxretry then
            mem, sc, st, new, m = {}, {}, {}, {}, 0
            cleared = true
            expiry, hcount = ban(addr, now, ids[j])
        end
        result(count, expiry, hcount, 0)
    end
    if cleared then
        call('DEL', w)
    elseif #gone > 0 then
        batched('ZREM', w, gone)
    end
    local add = {}
    for x = 1, m do
        if new[x] then
            add[#add + 1] = st[x]
            add[#add + 1] = mem[x]
        end
    end
    add_for_findtime(w, add)
end

-- Exactly once: the identities of the failures already counted for addr
-- (P.."seen:"..jail..":"..addr, score = failure time, kept as long as the
-- failure could count), so a failure sent again (a call that timed out but
-- ran, a resend after an outage, a log line read again after a restart)
-- is reported, not counted.  An empty identity is never a duplicate.
-- Returns, per failure of the group, true when it is a duplicate; the new
-- identities are added.
local function duplicates(s, ids, times, k)
    local dup, fresh, known = {}, {}, {}
    local ask, ask_at = {}, {}
    for j = 1, k do
        if ids[j] ~= '' then
            ask[#ask + 1] = ids[j]
            ask_at[#ask_at + 1] = j
        end
    end
    if #ask == 0 then
        return dup, 0
    end
    -- ids older than the first failure's window cannot matter any more
    call('ZREMRANGEBYSCORE', s, '-inf', '(' .. int(tonumber(times[1]) - findms))
    local have = call('ZMSCORE', s, unpack(ask))
    local add = {}
    for x = 1, #ask do
        local j, id = ask_at[x], ask[x]
        if have[x] or known[id] then
            dup[j] = true
        else
            known[id] = true
            add[#add + 1] = times[j]
            add[#add + 1] = id
        end
    end
    add_for_findtime(s, add)
    return dup, #ask
end

-- A duplicate's ban: when failure id made addr's live ban, its expiry
-- text and history count; else '0', 0.
local function made(addr, id, now)
    local h = hprefix .. addr
    if call('HGET', h, 'by') ~= id then
        return '0', 0
    end
    local cur = tonumber(call('ZSCORE', bans, addr) or '0') or 0
    if cur <= math.floor(now / 1000) or cur == math.huge then
        return '0', 0
    end
    return int(cur), tonumber(call('HGET', h, 'count') or '0') or 0
end

local sprefix = prefix .. 'seen:' .. jail .. ':'
local i = 9
while i <= nargs do
    local addr = argv[i]
    local k = tonumber(argv[i + 1])
    local w = wprefix .. addr
    local ids, times, cuts = {}, {}, {}
    for j = 1, k do
        local b = i + 2 + 3 * (j - 1)
        ids[j], times[j], cuts[j] = argv[b], argv[b + 1], argv[b + 2]
    end
    local dup = duplicates(sprefix .. addr, ids, times, k)
    if next(dup) == nil then
        -- the usual case: nothing seen before
        if k == 1 then
            one(addr, w, times[1], cuts[1], ids[1])
        else
            group(addr, w, times, cuts, ids, k)
        end
    else
        -- the failures that are not duplicates, in order
        local t2, c2, i2, at = {}, {}, {}, {}
        for j = 1, k do
            if not dup[j] then
                t2[#t2 + 1], c2[#c2 + 1], i2[#i2 + 1], at[#at + 1] = times[j], cuts[j], ids[j], j
            end
        end
        local first = n
        if #t2 == 1 then
            one(addr, w, t2[1], c2[1], i2[1])
        elseif #t2 > 1 then
            group(addr, w, t2, c2, i2, #t2)
        end
        -- spread the results back to every failure of the group, a
        -- duplicate reporting the window as it stands and no ban, unless
        -- it made the live one
        local got = {}
        for x = 1, #at do
            got[at[x]] = { out[first + 4 * x - 3], out[first + 4 * x - 2],
                           out[first + 4 * x - 1] }
        end
        n = first
        local last = nil
        for j = 1, k do
            if got[j] then
                last = got[j]
                result(got[j][1], got[j][2], got[j][3], 0)
            else
                local expiry, hcount = made(addr, ids[j], tonumber(times[j]))
                if hcount > 0 then
                    -- the window it completed was cleared by the ban
                    result(maxretry, expiry, hcount, 1)
                else
                    result(last and last[1] or call('ZCARD', w), expiry, hcount, 1)
                end
            end
        end
        for x = n + 1, #out do out[x] = nil end
    end
    i = i + 2 + 3 * k
end
return out
