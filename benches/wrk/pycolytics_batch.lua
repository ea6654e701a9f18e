-- POST /v1.0/events with a JSON array of 100 pycolytics events per body, as pycolytics' clients
-- (e.g. its Godot plugin) send them: every object has event_type, application, version,
-- platform, user_id, session_id, a `value` object and the api_key (~330 bytes each, ~33 KB per
-- body). Events/s = requests/s × 100 (benches/run.sh).
local common = dofile((os.getenv("WRK_SCRIPTS_DIR") or "benches/wrk") .. "/common.lua")

local EVENTS_PER_BODY = tonumber(os.getenv("WRK_EVENTS_PER_BODY") or "100")
local API_KEY = os.getenv("WRK_PYCOLYTICS_API_KEY") or "bench-api-key"

local TYPES = { "level_started", "level_completed", "item_picked", "settings_changed", "session_ping" }
local PLATFORMS = { "Windows", "Linux", "macOS", "Android" }

local function event(i, k, user, session)
  return table.concat({
    '{"event_type":"', TYPES[k % #TYPES + 1], '","application":"space-miner","version":"1.4.', k % 3,
    '","platform":"', PLATFORMS[i % #PLATFORMS + 1], '","user_id":"', user, '","session_id":"', session,
    '","value":{"level":', k % 40 + 1, ',"score":', (i * 37 + k * 11) % 100000,
    ',"duration_s":', k % 600, ".", k % 10, ',"difficulty":"normal","item":"crystal-', k % 12,
    '","fps":', 30 + k % 31, '},"api_key":"', API_KEY, '"}',
  })
end

common.install(function(i)
  local user, session = common.uuid(), common.uuid()
  local items = {}
  for k = 1, EVENTS_PER_BODY do
    items[k] = event(i, k, user, session)
  end
  return wrk.format("POST", "/v1.0/events", {
    ["User-Agent"] = "GodotEngine/4.3.stable (Linux)",
    ["Content-Type"] = "application/json",
  }, "[" .. table.concat(items, ",") .. "]")
end, 64)
