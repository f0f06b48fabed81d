-- Argo CD health check for cassandra-sink.io/CassandraSink. It reads only what the operator writes:
-- status.observedGeneration and the Ready / Stalled / Degraded conditions (docs/troubleshooting.md).
local hs = { status = "Progressing", message = "Waiting for the operator" }

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  return c.type .. " " .. c.reason .. ": " .. (c.message or "")
end

if obj.status == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

-- Stalled: a person must change something. Degraded: something keeps the sink from working.
for _, kind in ipairs({ "Stalled", "Degraded" }) do
  local c = condition(kind)
  if c ~= nil and c.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(c)
    return hs
  end
end

local ready = condition("Ready")
if ready ~= nil then
  if ready.status == "True" and (ready.reason == "Paused" or ready.reason == "Stopped") then
    hs.status = "Suspended"
  elseif ready.status == "True" then
    hs.status = "Healthy"
  end
  hs.message = describe(ready)
end
return hs
