#!lua
-- unban: lift bans.
--
-- ARGV: prefix, then one or more addresses.  Each one removed from
-- P.."bans" is announced as "unban <addr>".  The ban history stays (it
-- still escalates the next ban).  Returns the number removed.
-- #include changelog.lua
local prefix = ARGV[1]
local bans = prefix .. 'bans'
local removed = 0
for i = 2, #ARGV do
    if redis.call('ZREM', bans, ARGV[i]) == 1 then
        removed = removed + 1
        announce(prefix, 'unban ' .. ARGV[i])
    end
end
if removed > 0 then
    redis.call('DECRBY', prefix .. 'card', removed)
end
return removed
