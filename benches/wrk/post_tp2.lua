-- POST /com.snowplowanalytics.snowplow/tp2 with a payload_data body of 10 events (page views and
-- structured events with an entity), as the JavaScript tracker sends them: every value a string.
local common = dofile((os.getenv("WRK_SCRIPTS_DIR") or "benches/wrk") .. "/common.lua")

local CO = [[{\"schema\":\"iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0\",\"data\":[{\"schema\":\"iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0\",\"data\":{\"id\":\"5d4b2d1f-9a7e-4c61-8f3b-2b7c1e0d9a44\"}}]}]]

local EVENTS_PER_BODY = 10

local function event(i, k, user)
  local common_fields = table.concat({
    '"tv":"js-4.1.0","tna":"sp1","aid":"shop","p":"web","tz":"Europe/Berlin","lang":"en-US",',
    '"cs":"UTF-8","res":"1920x1080","cd":"24","cookie":"1","vp":"1280x720","ds":"1280x3012","vid":"3",',
    '"eid":"', common.uuid(), '","dtm":"17322624', string.format("%05d", k), '","stm":"1732262400123",',
    '"sid":"', user.sid, '","duid":"', user.duid, '",',
    '"url":"https://shop.example.com/products/', i, '","refr":"https://www.google.com/",',
    '"co":"', CO, '"',
  })
  if k % 2 == 0 then
    return '{"e":"pv","page":"Product ' .. i .. ' - Example Shop",' .. common_fields .. "}"
  end
  return '{"e":"se","se_ca":"checkout","se_ac":"add-to-basket","se_la":"sku-' .. i .. "-" .. k ..
    '","se_pr":"size-m","se_va":"' .. k .. '.99",' .. common_fields .. "}"
end

common.install(function(i)
  local user = { duid = common.uuid(), sid = common.uuid(), nuid = common.uuid() }
  local events = {}
  for k = 1, EVENTS_PER_BODY do
    events[k] = event(i, k, user)
  end
  local body = '{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[' ..
    table.concat(events, ",") .. "]}"
  return wrk.format("POST", "/com.snowplowanalytics.snowplow/tp2", {
    ["User-Agent"] = common.user_agent,
    ["Content-Type"] = "application/json; charset=UTF-8",
    ["Origin"] = "https://shop.example.com",
    ["Referer"] = "https://shop.example.com/products/" .. i,
    ["Cookie"] = "sp=" .. user.nuid,
  }, body)
end, 256)
