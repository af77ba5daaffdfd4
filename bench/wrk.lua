-- wrk script for bench/run.sh. The request comes from the environment:
--   BENCH_METHOD (default GET), BENCH_BODY (a form body, sent as
--   application/x-www-form-urlencoded), BENCH_AUTH (an Authorization value).
-- done() prints one machine-readable line:
--   RESULT <req/s> <p50 µs> <p99 µs> <non-2xx/3xx responses> <socket errors> <requests>
local method = os.getenv("BENCH_METHOD")
local body = os.getenv("BENCH_BODY")
local auth = os.getenv("BENCH_AUTH")
if method and method ~= "" then wrk.method = method end
if body and body ~= "" then
  wrk.body = body
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
end
