-- take.lua: look at a recording whose timer is due (the timer sweep's call;
-- admit and finish do the same at their end): take its next event if its turn
-- has come, publish again a turn's handlers that have not started, dead-letter
-- the handlers past their deadline (each also a "lost" run on the recording's
-- timeline, which sets the dashboard's "dead letters" flag). Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (1-13)     ARGV: 1-10 see _lib.lua
-- Reply: the take reply described in _lib.lua.
local r = take()
touch()
return r
