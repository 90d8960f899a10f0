-- Shared helpers of the benchmark scripts: id files, per-thread seeds, JSON summary.
-- wrk runs every script once per thread (plus once for setup/done), each in its own Lua state.
local M = {}

local thread_count = 0

-- One id per line, written by bench/run.py from the database.
function M.load_lines(path)
  local lines = {}
  local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in file:lines() do
    if #line > 0 then lines[#lines + 1] = line end
  end
  file:close()
  assert(#lines > 0, "no lines in " .. path)
  return lines
end

function M.setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_id", thread_count)
end

function M.seed()
  -- Different threads must draw different ids and make different emails.
  math.randomseed(os.time() * 1000 + (thread_id or 0))
end

-- Printed once after the run; bench/run.py reads the line starting with BENCH_JSON.
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,' ..
    '"max_us":%.0f,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end

return M
