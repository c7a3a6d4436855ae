-- Tokens rotate: every response carries the next refresh token of its session,
-- which goes back into this thread's pool for a later request.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local pool = {}
local counter = 0
function setup(thread) counter = counter + 1; thread:set("slot", counter) end
function init(args)
  local all = lines(os.getenv("BENCH_TOKENS"))
  local threads = tonumber(os.getenv("BENCH_THREADS"))
  for k = slot, #all, threads do pool[#pool + 1] = all[k] end
end
function request()
  local token = table.remove(pool, 1)
  return wrk.format("POST", "/users/refresh", {["Authorization"] = "Bearer " .. token})
end
function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then pool[#pool + 1] = token end
end
