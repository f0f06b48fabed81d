-- Objects the health check is tested on, with the status it must report.
local function sink(generation, observed, conditions, state)
  return {
    metadata = { name = "values", generation = generation },
    spec = { state = state },
    status = observed ~= nil and { observedGeneration = observed, conditions = conditions } or nil,
  }
end

local function c(kind, status, reason, message)
  return { type = kind, status = status, reason = reason, message = message }
end

local healthy = {
  c("Ready", "True", "WorkersReady", "3 of 3 workers ready"),
  c("Progressing", "False", "RolledOut", "workers match the spec"),
  c("Degraded", "False", "AsExpected", "the spec is valid"),
}

return {
  { name = "new object without status", obj = sink(1, nil), status = "Progressing" },
  { name = "ready", obj = sink(2, 2, healthy), status = "Healthy" },
  { name = "ready but for an older generation", obj = sink(3, 2, healthy), status = "Progressing" },
  {
    name = "rolling out",
    obj = sink(2, 2, {
      c("Ready", "False", "WorkersNotReady", "1 of 3 workers ready"),
      c("Progressing", "True", "RollingOut", "1 of 3 workers updated"),
      c("Degraded", "False", "AsExpected", "the spec is valid"),
    }),
    status = "Progressing",
  },
  {
    name = "invalid spec",
    obj = sink(4, 4, {
      c("Ready", "False", "NotExactlyOnce", "the spec cannot run; see Degraded"),
      c("Progressing", "False", "NotExactlyOnce", "waiting for a corrected spec"),
      c("Degraded", "True", "NotExactlyOnce", "spec.insertQuery cannot be applied exactly once"),
    }),
    status = "Degraded",
  },
  {
    name = "stopped",
    obj = sink(5, 5, {
      c("Ready", "False", "Stopped", "spec.state is stopped; committed positions are kept"),
      c("Progressing", "False", "Stopped", "all workers stopped"),
      c("Degraded", "False", "AsExpected", "the spec is valid"),
    }, "stopped"),
    status = "Suspended",
  },
}
