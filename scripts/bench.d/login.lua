dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local emails, i
function init(args) emails = lines(os.getenv("BENCH_EMAILS")); i = math.random(#emails) end
function request()
  i = i % #emails + 1
  local body = string.format('{"email":"%s","password":"correct horse battery"}', emails[i])
  return wrk.format("POST", "/users/login", {["Content-Type"] = "application/json"}, body)
end
