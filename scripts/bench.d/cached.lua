dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local ids, i
function init(args) ids = lines(os.getenv("BENCH_IDS")); i = math.random(#ids) end
function request()
  i = i % #ids + 1
  return wrk.format("GET", "/users/" .. ids[i])
end
