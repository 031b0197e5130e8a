-- take.lua: look at a recording whose timer is due (the timer sweep's call;
-- admit and finish do the same at their end): take its next event if its turn
-- has come, publish again a turn's handlers that have not started, dead-letter
-- the handlers past their deadline. Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (1-10)     ARGV: 1-8 see _lib.lua
-- Reply: the take reply described in _lib.lua.
local r = take()
touch()
return r
