-- wrk script for bench/run.sh's introspection-flood scenario: opaque bearer
-- tokens no server issued, drawn at random from a pool of BENCH_POOL (default
-- 1000), so that each is presented again and again.
-- done() prints the line of wrk.lua:
--   RESULT <req/s> <p50 µs> <p99 µs> <non-2xx/3xx responses> <socket errors> <requests>
local pool = tonumber(os.getenv("BENCH_POOL") or "1000")

function init(args)
  math.randomseed(os.time() + math.random(1, 1000000))
end

function request()
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer flood-" .. math.random(1, pool) })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
end
