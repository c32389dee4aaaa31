-- unban: lift one ban.
--
-- ARGV: prefix, addr.  Removes addr from P.."bans" and, when it was there,
-- publishes "unban <addr>".  The ban history stays (it still escalates the
-- next ban).  Returns 1 when a ban was removed, 0 otherwise.
local removed = redis.call('ZREM', ARGV[1] .. 'bans', ARGV[2])
if removed == 1 then
    redis.call('PUBLISH', ARGV[1] .. 'events', 'unban ' .. ARGV[2])
end
return removed
