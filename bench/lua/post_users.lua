-- POST a new user with a unique email to BENCH_PATH (ours or the bare view).
package.path = "bench/lua/?.lua;" .. package.path
local bench = require("bench")

local path = os.getenv("BENCH_PATH") or "/api/v1/users/"
-- bench/run.py deletes users with this prefix after the run.
local prefix = os.getenv("BENCH_EMAIL_PREFIX") or "bench"
-- bench/run.py passes a fresh nonce per wrk run, so no two runs make the same email.
local run = os.getenv("BENCH_NONCE") or tostring(os.time())
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

setup = bench.setup
done = bench.done

function init(args)
  bench.seed()
end

function request()
  counter = counter + 1
  local email = string.format("%s-%s-%d-%d@example.com", prefix, run, thread_id, counter)
  local body = string.format('{"name":"Bench User %d","email":"%s"}', counter, email)
  return wrk.format("POST", path, headers, body)
end
