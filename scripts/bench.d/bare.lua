dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- A request built per call, as the cached scenario builds its own: wrk spends
-- the same CPU on every route compared (on two shared cores, CPU taken from
-- the service), so the routes differ only in what the service does.
function request()
  return wrk.format("GET", wrk.path)
end
