-- Argo CD health check for cassandra-sink.io/CassandraSink. It reads only what the operator writes:
-- status.observedGeneration and the Ready / Degraded conditions (reasons in docs/operator.md).
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

if obj.status == nil then
  return hs
end
if obj.metadata ~= nil and obj.metadata.generation ~= nil
    and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.reason .. ": " .. (degraded.message or "")
  return hs
end

local ready = condition("Ready")
if ready ~= nil then
  if ready.status == "True" then
    hs.status = "Healthy"
  elseif ready.reason == "Paused" or ready.reason == "Stopped" then
    hs.status = "Suspended"
  end
  hs.message = ready.reason .. ": " .. (ready.message or "")
end
return hs
