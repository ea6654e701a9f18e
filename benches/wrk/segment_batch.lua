-- POST /v1/batch with 100 Segment messages per body, shaped like analytics-python's uploads:
-- `{"batch": [...], "sentAt", "writeKey", "context"}`, each message a `track` call with a
-- messageId (uuid4), userId or anonymousId, ISO timestamps, a library context and a handful of
-- e-commerce properties (~500 bytes each, ~55 KB per body). Write key both in the body and as
-- HTTP Basic auth (username = key, empty password), as analytics-python 2.4 and analytics-node
-- send it. Events/s = requests/s × 100 (benches/run.sh).
local common = dofile((os.getenv("WRK_SCRIPTS_DIR") or "benches/wrk") .. "/common.lua")

local EVENTS_PER_BODY = tonumber(os.getenv("WRK_EVENTS_PER_BODY") or "100")
local WRITE_KEY = os.getenv("WRK_SEGMENT_WRITE_KEY") or "bench-write-key"

local EVENTS = { "Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Products Searched" }
local CATEGORIES = { "Apparel", "Shoes", "Accessories", "Outdoor" }

-- base64 of "<key>:" for the Authorization header.
local function basic(key)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local s = key .. ":"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 3, 0, -1 do
      local v = math.floor(n / 64 ^ k) % 64
      chars[#chars + 1] = alphabet:sub(v + 1, v + 1)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return "Basic " .. table.concat(out)
end

local function message(i, k)
  local ms = string.format("%03d", (i * 7 + k) % 1000)
  local id
  if k % 3 == 0 then
    id = '"anonymousId":"' .. common.uuid() .. '"'
  else
    id = '"userId":"user-' .. ((i * 131 + k) % 5000) .. '","anonymousId":"' .. common.uuid() .. '"'
  end
  return table.concat({
    '{"type":"track","event":"', EVENTS[k % #EVENTS + 1], '",', id,
    ',"messageId":"', common.uuid(), '"',
    ',"timestamp":"2026-11-22T08:00:0', k % 10, ".", ms, 'Z"',
    ',"properties":{"product_id":"sku-', i, "-", k, '","name":"Example product ', k,
    '","category":"', CATEGORIES[k % #CATEGORIES + 1], '","price":', k % 90 + 9, ".99",
    ',"quantity":', k % 4 + 1, ',"currency":"EUR","coupon":"WINTER', k % 7,
    '","url":"https://shop.example.com/products/', i, "-", k, '"}',
    ',"context":{"library":{"name":"analytics-python","version":"2.4.0"},',
    '"ip":"203.0.113.', k % 250 + 1, '","locale":"en-US","timezone":"Europe/Berlin"}',
    ',"integrations":{}}',
  })
end

common.install(function(i)
  local items = {}
  for k = 1, EVENTS_PER_BODY do
    items[k] = message(i, k)
  end
  local body = '{"batch":[' .. table.concat(items, ",") ..
    '],"sentAt":"2026-11-22T08:00:10.000Z","writeKey":"' .. WRITE_KEY ..
    '","context":{"library":{"name":"analytics-python","version":"2.4.0"}}}'
  return wrk.format("POST", "/v1/batch", {
    ["User-Agent"] = "analytics-python/2.4.0",
    ["Content-Type"] = "application/json",
    ["Authorization"] = basic(WRITE_KEY),
  }, body)
end, 64)
