-- GET /health: the same HTTP stack without touching the log; the ceiling for the other scenarios.
local common = dofile((os.getenv("WRK_SCRIPTS_DIR") or "benches/wrk") .. "/common.lua")

common.install(function(_i)
  return wrk.format("GET", "/health", { ["User-Agent"] = common.user_agent })
end, 1)
