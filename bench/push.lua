-- wrk: POST /api/v1/sync/push of VS_OPS new ops per request, each with
-- last_seen_server_seq = the cursor the desktop would send (VS_CURSOR),
-- unique op ids across threads and requests.
local ops = tonumber(os.getenv("VS_OPS") or "100")
local cursor = os.getenv("VS_CURSOR") or "0"
local token = os.getenv("VS_TOKEN")
local counter = 0
-- Thread numbers are handed out in setup() (main Lua state) and set as a
-- global "tid" in each thread's own state; no local may shadow it there.
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
end

function init(args)
  math.randomseed(os.time() + tid * 7919)
  prefix = string.format("%d-%d-%d", tid, os.time(), math.random(1, 1e9))
end

function request()
  counter = counter + 1
  local parts = {}
  for i = 1, ops do
    local id = prefix .. "-" .. counter .. "-" .. i
    parts[i] = '{"op_id":"' .. id .. '","entity_type":"file","entity_id":"Bench/' .. id ..
      '.md","op_type":"create","payload_json":"{\\"path\\":\\"Bench/' .. id ..
      '.md\\",\\"contentHash\\":\\"0123456789abcdef\\",\\"content\\":\\"benchmark text of a small note\\"}",' ..
      '"client_sequence":' .. counter .. ',"last_seen_server_seq":' .. cursor ..
      ',"created_at":"2026-11-25T00:00:00Z"}'
  end
  local body = '{"device_id":"bench","ops":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/api/v1/sync/push",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
