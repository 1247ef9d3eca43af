-- wrk script for make bench (bench/src/serve.rs), row 5: every request asks for one aligned
-- 1 MiB range at a random offset of the file. The URL (with its ?token= for r2-sync) comes
-- from the command line; the file size is the script's first argument:
-- wrk ... URL -- SIZE_BYTES
-- No response() callback: defining one makes wrk hand every 1 MiB body to Lua, which would
-- make the client the bottleneck. The harness checks a 206 with curl before running wrk.

local chunk = 1024 * 1024
local chunks = 1

function init(args)
  local size = tonumber(args[1])
  if size == nil or size < chunk then
    error("range.lua: pass the file size in bytes after --")
  end
  chunks = math.floor(size / chunk)
  -- Threads start together; mix in the address of a fresh table so they differ.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
  local offset = math.random(0, chunks - 1) * chunk
  wrk.headers["Range"] = string.format("bytes=%d-%d", offset, offset + chunk - 1)
  return wrk.format(nil)
end
