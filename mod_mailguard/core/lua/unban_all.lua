-- unban_all: lift every ban, expired or not.
--
-- ARGV: prefix.  Publishes one "unban <addr>" per member so every
-- subscriber drops it at once, then deletes P.."bans".  Returns the number
-- of members removed.
local bans = ARGV[1] .. 'bans'
local events = ARGV[1] .. 'events'
local members = redis.call('ZRANGE', bans, 0, -1)
for i = 1, #members do
    redis.call('PUBLISH', events, 'unban ' .. members[i])
end
redis.call('DEL', bans)
return #members
