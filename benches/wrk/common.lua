-- Shared by the wrk scenarios in this folder (loaded with dofile; wrk runs from the repository
-- root, see benches/daemon.sh).
--
-- * A pool of pre-formatted requests per wrk thread, so request() costs no string building.
-- * Optional fixed-rate pacing: with WRK_RATE=<total requests/s> (and WRK_THREADS,
--   the -t value) each thread sends on a schedule instead of as fast as responses come back.
--   wrk measures latency from the moment a request is written, so a schedule that is kept gives
--   latencies at that offered rate. wrk's timers have millisecond resolution: requests leave in
--   1 ms bursts of rate/1000.
-- * done() prints one line `SLUICE_RESULT key=value ...` that benches/daemon.sh parses.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } sluice_timespec;
  int clock_gettime(int clk_id, sluice_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("sluice_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local M = {}

-- A random lowercase UUID-shaped string.
function M.uuid()
  local hex = "0123456789abcdef"
  local out = {}
  for i = 1, 36 do
    if i == 9 or i == 14 or i == 19 or i == 24 then
      out[i] = "-"
    else
      local n = math.random(1, 16)
      out[i] = hex:sub(n, n)
    end
  end
  return table.concat(out)
end

M.user_agent =
  "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"

-- Scenario scripts call this with a function(i) returning one formatted request (wrk.format).
function M.install(make_request, pool_size)
  local pool = {}
  local next_index = 0
  local thread_id = 0

  function setup(thread)
    thread_id = thread_id + 1
    thread:set("sluice_thread_id", thread_id)
  end

  function init(_args)
    math.randomseed(os.time() * 1000 + (sluice_thread_id or 0) * 7919)
    for i = 1, pool_size do
      pool[i] = make_request(i)
    end
  end

  function request()
    next_index = next_index % pool_size + 1
    return pool[next_index]
  end

  local rate = tonumber(os.getenv("WRK_RATE") or "")
  if rate and rate > 0 then
    local threads = tonumber(os.getenv("WRK_THREADS") or "1")
    local interval = threads * 1000 / rate -- ms between two sends of one thread
    local next_send = nil
    function delay()
      local now = now_ms()
      -- After a stall of more than a second, start the schedule afresh rather than bursting.
      if next_send == nil or next_send < now - 1000 then
        next_send = now
      end
      local wait = next_send - now
      next_send = next_send + interval
      if wait < 0 then
        return 0
      end
      return wait
    end
  end

  function done(summary, latency, _requests)
    local seconds = summary.duration / 1e6
    local e = summary.errors
    io.write(string.format(
      "SLUICE_RESULT requests=%d seconds=%.3f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f " ..
      "p999_ms=%.3f max_ms=%.3f non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency:percentile(99.9) / 1000, latency.max / 1000,
      e.status, e.connect, e.read, e.write, e.timeout))
  end
end

return M
