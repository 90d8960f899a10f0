-- PUT a new name on a random real user (ids from BENCH_IDS).
package.path = "bench/lua/?.lua;" .. package.path
local bench = require("bench")

local ids = bench.load_lines(os.getenv("BENCH_IDS"))
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

setup = bench.setup
done = bench.done

function init(args)
  bench.seed()
end

function request()
  counter = counter + 1
  local body = string.format('{"name":"Renamed %d-%d"}', thread_id, counter)
  return wrk.format("PUT", "/api/v1/users/" .. ids[math.random(#ids)], headers, body)
end
