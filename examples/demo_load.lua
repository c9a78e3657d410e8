-- wrk script: GET the demo app's routes in turn, like asgiprof demo's load.
--     wrk -t2 -c8 -d10s -s examples/demo_load.lua http://127.0.0.1:8000
local paths = {
  "/api/users/1", "/api/users/2", "/api/orders/7", "/api/products/search?q=blue",
  "/api/reports/daily", "/api/health", "/api/export",
}
local i = 0

request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
