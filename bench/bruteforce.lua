-- wrk script for bench/run.sh's bruteforce scenario: client_credentials
-- requests with a wrong secret (client_secret_post).
--   BENCH_FLOOD_CLIENT  the client_id (default bench)
--   BENCH_SPREAD=ids    a random client_id and X-Forwarded-For address per
--                       request, as a distributed attack looks to a Caddy
--                       that trusts the proxy in front of it
--   BENCH_SPREAD=ips    the client_id above from a random address per request
-- done() prints the line of wrk.lua:
--   RESULT <req/s> <p50 µs> <p99 µs> <non-2xx/3xx responses> <socket errors> <requests>
local client = os.getenv("BENCH_FLOOD_CLIENT") or "bench"
local spread = os.getenv("BENCH_SPREAD") or ""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "grant_type=client_credentials&client_id=" .. client .. "&client_secret=wrong-secret"

function init(args)
  math.randomseed(os.time())
end

function request()
  if spread ~= "ids" and spread ~= "ips" then
    return wrk.request()
  end
  local id = client
  if spread == "ids" then
    id = "flood" .. math.random(1, 1000000000)
  end
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format(nil, nil,
    { ["Content-Type"] = "application/x-www-form-urlencoded", ["X-Forwarded-For"] = ip },
    "grant_type=client_credentials&client_id=" .. id .. "&client_secret=wrong-secret")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %d %d %d %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout, summary.requests))
end
