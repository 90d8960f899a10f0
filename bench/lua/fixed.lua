-- The URL given to wrk, every time (lists, cursor pages, stats); only adds the summary.
package.path = "bench/lua/?.lua;" .. package.path
local bench = require("bench")

done = bench.done
