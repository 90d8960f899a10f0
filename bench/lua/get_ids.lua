-- GET <BENCH_PREFIX><random real id><BENCH_SUFFIX>, ids from the file BENCH_IDS.
package.path = "bench/lua/?.lua;" .. package.path
local bench = require("bench")

local ids = bench.load_lines(os.getenv("BENCH_IDS"))
local prefix = os.getenv("BENCH_PREFIX") or "/api/v1/users/"
local suffix = os.getenv("BENCH_SUFFIX") or ""
-- BENCH_AUTH: an API key, sent as `Authorization: Bearer <key>` (the auth-on target).
local headers = nil
if os.getenv("BENCH_AUTH") then headers = {Authorization = "Bearer " .. os.getenv("BENCH_AUTH")} end

setup = bench.setup
done = bench.done

function init(args)
  bench.seed()
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)] .. suffix, headers)
end
