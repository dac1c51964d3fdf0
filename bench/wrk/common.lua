-- Shared by every wrk script of the benchmark harness (bench/run.sh): prints the run's result
-- as ONE JSON line on stdout, prefixed so run.sh can pick it out of wrk's own report.
--   requests, duration_us, rps, bytes, errors{connect,read,write,status,timeout}, latency_us{...}
-- Latency is wrk's per-request latency (closed loop: a request is sent when the previous
-- response on its connection has arrived), in microseconds.

local bench = {}

function bench.json_done(summary, latency, requests)
  local e = summary.errors
  local rps = 0
  if summary.duration > 0 then
    rps = summary.requests / (summary.duration / 1e6)
  end
  local parts = {
    string.format('"requests":%d', summary.requests),
    string.format('"duration_us":%d', summary.duration),
    string.format('"rps":%.1f', rps),
    string.format('"bytes":%d', summary.bytes),
    string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
      e.connect, e.read, e.write, e.status, e.timeout),
    string.format('"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}',
      latency.min, latency.mean, latency.stdev,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max),
  }
  io.write("BENCH_JSON " .. "{" .. table.concat(parts, ",") .. "}\n")
end

-- Lines of a file, blank lines skipped.
function bench.read_lines(path)
  local lines = {}
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    if line ~= "" then lines[#lines + 1] = line end
  end
  f:close()
  return lines
end

-- Gives each wrk thread its number (0-based), so a thread can take its own share of a token
-- file (the thread count comes from BENCH_THREADS, which run.sh sets to wrk's -t).
local thread_count = 0
function bench.number_threads(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

return bench
