#!lua
-- resync: tell every follower to read the whole set again.
--
-- ARGV: prefix, force (0/1).  Without force, only when the set was edited
-- by hand (ZCARD differs from P.."card", re-checked here so that of many
-- followers noticing the same edit only one announces it).  Sets P.."card"
-- to ZCARD and appends "resync" to the change log.  A new store (no count
-- and no bans) just gets its count.  Returns 1 when it announced, 0 when
-- there was nothing to do.
-- #include changelog.lua
local prefix = ARGV[1]
local z = redis.call('ZCARD', prefix .. 'bans')
local card = tonumber(redis.call('GET', prefix .. 'card') or '-1')
if ARGV[2] ~= '1' and (card == z or (card == -1 and z == 0)) then
    if card == -1 then redis.call('SET', prefix .. 'card', 0) end
    return 0
end
redis.call('SET', prefix .. 'card', z)
changelog(prefix, 'resync')
return 1
