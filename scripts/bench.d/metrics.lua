-- Anonymous scrapes of /metrics, as fast as they come.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request() return wrk.format("GET", "/metrics") end
