#!lua flags=no-writes
-- is_banned: whether one member holds a live ban.
--
-- ARGV: prefix, addr, now (Unix s).  Returns the expiry as text ("inf"
-- when permanent) when addr is a member whose expiry is after now, else
-- false (a nil reply).  Expired members are left for list to prune.
local score = redis.call('ZSCORE', ARGV[1] .. 'bans', ARGV[2])
if score and (score == 'inf' or tonumber(score) > tonumber(ARGV[3])) then
    return score
end
return false
