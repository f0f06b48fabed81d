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
  c("Reconciling", "False", "WorkersReady", "nothing left to do until the spec changes"),
  c("Stalled", "False", "AsExpected", "nothing is in the way"),
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
      c("Reconciling", "True", "RollingOut", "1 of 3 workers updated"),
      c("Stalled", "False", "AsExpected", "nothing is in the way"),
      c("Progressing", "True", "RollingOut", "1 of 3 workers updated"),
      c("Degraded", "False", "AsExpected", "the spec is valid"),
    }),
    status = "Progressing",
  },
  {
    name = "invalid spec",
    obj = sink(4, 4, {
      c("Ready", "False", "NotExactlyOnce", "the spec cannot run; see Stalled"),
      c("Reconciling", "False", "AsExpected", "nothing left to do until the spec changes"),
      c("Stalled", "True", "NotExactlyOnce", "spec.insertQuery cannot be applied exactly once"),
      c("Progressing", "False", "NotExactlyOnce", "waiting for a corrected spec"),
      c("Degraded", "True", "NotExactlyOnce", "spec.insertQuery cannot be applied exactly once"),
    }),
    status = "Degraded",
  },
  {
    name = "cluster unreachable (retried)",
    obj = sink(4, 4, {
      c("Ready", "False", "CassandraUnreachable", "waiting for the sink's servers; see Reconciling"),
      c("Reconciling", "True", "CassandraUnreachable", "no answer from 10.0.0.1:9042"),
      c("Stalled", "False", "AsExpected", "nothing is in the way"),
      c("Progressing", "True", "CassandraUnreachable", "no answer from 10.0.0.1:9042"),
      c("Degraded", "True", "CassandraUnreachable", "no answer from 10.0.0.1:9042"),
    }),
    status = "Degraded",
  },
  {
    name = "stopping",
    obj = sink(5, 5, {
      c("Ready", "False", "Stopped", "spec.state is stopped: waiting for the workers to leave"),
      c("Reconciling", "True", "Stopping", "2 workers still committing and releasing their partitions"),
      c("Stalled", "False", "AsExpected", "nothing is in the way"),
      c("Progressing", "True", "Stopping", "2 workers still committing and releasing their partitions"),
      c("Degraded", "False", "AsExpected", "the spec is valid"),
    }, "stopped"),
    status = "Progressing",
  },
  {
    name = "stopped",
    obj = sink(5, 5, {
      c("Ready", "True", "Stopped", "spec.state is stopped: no worker runs; committed positions are kept"),
      c("Reconciling", "False", "Stopped", "nothing left to do until the spec changes"),
      c("Stalled", "False", "AsExpected", "nothing is in the way"),
      c("Progressing", "False", "Stopped", "workers match the spec"),
      c("Degraded", "False", "AsExpected", "the spec is valid"),
    }, "stopped"),
    status = "Suspended",
  },
  {
    name = "paused",
    obj = sink(6, 6, {
      c("Ready", "True", "Paused", "spec.state is paused: no worker runs; committed positions are kept"),
      c("Reconciling", "False", "Paused", "nothing left to do until the spec changes"),
      c("Stalled", "False", "AsExpected", "nothing is in the way"),
      c("Progressing", "False", "Paused", "workers match the spec"),
      c("Degraded", "False", "AsExpected", "the spec is valid"),
    }, "paused"),
    status = "Suspended",
  },
  {
    name = "a worker failed for good",
    obj = sink(7, 7, {
      c("Ready", "False", "WorkerFailed", "a worker stopped on a failure that restarting it cannot cure; see Stalled"),
      c("Reconciling", "False", "AsExpected", "nothing left to do until the spec changes"),
      c("Stalled", "True", "WorkerFailed", "worker pod values-worker-1: reason=RangeGone: partition 0"),
      c("Progressing", "False", "WorkerFailed", "waiting for a corrected spec"),
      c("Degraded", "True", "WorkerFailed", "worker pod values-worker-1: reason=RangeGone: partition 0"),
    }),
    status = "Degraded",
  },
}
