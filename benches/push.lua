-- wrk script: POST /push with a wrapped envelope of tests/fixtures/inventory.json's payload
-- and a message id of its own for every request (a redelivery would measure the dedup path).
local data = "eyJldmVudF90eXBlIjoiaW52ZW50b3J5IiwiaW52ZW50b3J5X2lkIjoiSU5WLTg4MTIwIiwicHJvZHVjdF9pZCI6IlNLVS0xMDAxIiwid2FyZWhvdXNlX2lkIjoiV0gtT1NMLTEiLCJxdWFudGl0eV9jaGFuZ2UiOi0yLCJyZWFzb24iOiJzYWxlIiwidGltZXN0YW1wIjoiMjAyNi0xMS0yNVQwOToxNDowNS4yNVoifQ=="
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"message":{"data":"%s","messageId":"wrk%d-%d-%d","publishTime":"2026-11-25T10:00:00Z","attributes":{}},"subscription":"projects/bench/subscriptions/wrk"}',
    data, id or 0, os.time(), counter)
  return wrk.format("POST", "/push", {["content-type"] = "application/json"}, body)
end
