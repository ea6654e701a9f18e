-- GET /i: one page view per request, shaped like the JavaScript tracker's pixel request
-- (per-request event id, 1000 distinct users, a base64 web_page entity, browser headers).
local common = dofile((os.getenv("WRK_SCRIPTS_DIR") or "benches/wrk") .. "/common.lua")

local CX = "eyJzY2hlbWEiOiJpZ2x1OmNvbS5zbm93cGxvd2FuYWx5dGljcy5zbm93cGxvdy9jb250ZXh0cy9qc29uc2NoZW1hLzEtMC0wIiwiZGF0YSI6W3sic2NoZW1hIjoiaWdsdTpjb20uc25vd3Bsb3dhbmFseXRpY3Muc25vd3Bsb3cvd2ViX3BhZ2UvanNvbnNjaGVtYS8xLTAtMCIsImRhdGEiOnsiaWQiOiI1ZDRiMmQxZi05YTdlLTRjNjEtOGYzYi0yYjdjMWUwZDlhNDQifX1dfQ"

local users = {}

common.install(function(i)
  local user = users[i % 1000 + 1]
  if user == nil then
    user = { duid = common.uuid(), sid = common.uuid(), nuid = common.uuid() }
    users[i % 1000 + 1] = user
  end
  local query = table.concat({
    "stm=1732262400123",
    "e=pv",
    "url=https%3A%2F%2Fshop.example.com%2Fproducts%2F" .. i,
    "page=Product%20" .. i .. "%20%E2%80%93%20Example%20Shop",
    "refr=https%3A%2F%2Fwww.google.com%2F",
    "tv=js-4.1.0", "tna=sp1", "aid=shop", "p=web",
    "tz=Europe%2FBerlin", "lang=en-US", "cs=UTF-8", "res=1920x1080", "cd=24", "cookie=1",
    "eid=" .. common.uuid(),
    "dtm=1732262400000", "vp=1280x720", "ds=1280x3012", "vid=3",
    "sid=" .. user.sid,
    "duid=" .. user.duid,
    "cx=" .. CX,
  }, "&")
  return wrk.format("GET", "/i?" .. query, {
    ["User-Agent"] = common.user_agent,
    ["Referer"] = "https://shop.example.com/products/" .. i,
    ["Cookie"] = "sp=" .. user.nuid .. "; _sp_id.1fff=" .. user.duid .. ".1732262400.3.1732262400.1732262000",
    ["Accept"] = "image/avif,image/webp,*/*",
  })
end, 512)
