-- 70% cached profile reads, 10% logins, 10% sign-ups, 10% liveness.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local counter = 0
-- Each thread gets its own number, so generated e-mails never collide.
function setup(thread) counter = counter + 1; thread:set("slot", counter) end
local ids, emails, n, tag
function init(args)
  ids = lines(os.getenv("BENCH_IDS")); emails = lines(os.getenv("BENCH_EMAILS"))
  n = 0; tag = string.format("%x-%d", os.time(), slot)
end
function request()
  n = n + 1
  local r = math.random(100)
  if r <= 70 then
    return wrk.format("GET", "/users/" .. ids[math.random(#ids)])
  elseif r <= 80 then
    local body = string.format('{"email":"%s","password":"correct horse battery"}', emails[math.random(#emails)])
    return wrk.format("POST", "/users/login", {["Content-Type"] = "application/json"}, body)
  elseif r <= 90 then
    local body = string.format('{"name":"Mix","email":"m-%s-%d@example.com","password":"correct horse battery"}', tag, n)
    return wrk.format("POST", "/users/signup", {["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", "/health/live")
end
