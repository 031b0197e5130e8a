-- take.lua: take the recording's next event if its turn has come (the timer
-- sweep's call; admit and finish do the same at their end). Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua     ARGV: 1-4 see _lib.lua
-- Reply: the take reply described in _lib.lua.
local r = take()
touch()
return r
