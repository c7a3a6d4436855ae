dofile(os.getenv("BENCH_LUA") .. "/common.lua")
-- PATCH /users/profile as the users whose access tokens BENCH_ACCESS lists,
-- in turn; each request changes the name, so every write invalidates.
local tokens, i, n
function init(args) tokens = lines(os.getenv("BENCH_ACCESS")); i = math.random(#tokens); n = 0 end
function request()
  i = i % #tokens + 1
  n = n + 1
  local body = string.format('{"name":"Bench %d"}', n)
  return wrk.format("PATCH", "/users/profile",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[i]}, body)
end
