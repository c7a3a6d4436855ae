dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local counter = 0
-- Each thread gets its own number, so generated e-mails never collide.
function setup(thread) counter = counter + 1; thread:set("slot", counter) end
local n, tag = 0, ""
function init(args) tag = string.format("%x-%d", os.time(), slot) end
function request()
  n = n + 1
  local body = string.format('{"name":"Bench","email":"b-%s-%d@example.com","password":"correct horse battery"}', tag, n)
  return wrk.format("POST", "/users/signup", {["Content-Type"] = "application/json"}, body)
end
