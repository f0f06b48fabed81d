//! The conditions a sink shows, decided from what the operator observed, without I/O.
//!
//! Five conditions, each with a [`Reason`]:
//! - `Ready`: the sink is as its spec asks. Running: every worker of the current spec is ready
//!   (connected and committing). Paused or stopped: every worker is gone.
//! - `Reconciling` and `Stalled`, the conventions kstatus reads (Flux, `kubectl wait`, cli-utils):
//!   `Reconciling=True` while the operator or the workers are still getting there, `Stalled=True`
//!   when they cannot without a person changing something ([`Reason::is_permanent`]). kstatus then
//!   computes a sink as InProgress, Failed or, once Ready, Current.
//! - `Progressing` and `Degraded`, as Deployments have them, read by the Argo CD health check.
//!
//! A condition's `lastTransitionTime` changes only when its status does, so reconciling an unchanged
//! sink writes an identical status (no spurious updates).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::SinkState;
use crate::reason::Reason;
use crate::validate::Problem;

/// What the operator observed about the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Workers {
    /// Replicas wanted (the sink's parallelism).
    pub wanted: i32,
    /// Pods of the current template that are ready.
    pub ready: i32,
    /// Pods of the current template.
    pub updated: i32,
    /// Pods of any template (old ones still stopping included).
    pub existing: i32,
    /// True when the Deployment controller has seen the latest Deployment spec.
    pub observed: bool,
}

/// The conditions a sink carries, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The sink is as its spec asks.
    Ready,
    /// The operator or the workers are still getting there (kstatus).
    Reconciling,
    /// They cannot get there without a change by a person (kstatus).
    Stalled,
    /// The workers are being rolled out or stopped.
    Progressing,
    /// Something keeps the sink from working.
    Degraded,
}

impl Kind {
    /// The condition's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ready => "Ready",
            Kind::Reconciling => "Reconciling",
            Kind::Stalled => "Stalled",
            Kind::Progressing => "Progressing",
            Kind::Degraded => "Degraded",
        }
    }
}

/// A desired condition, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Which condition.
    pub kind: Kind,
    /// True or false.
    pub status: bool,
    /// Why.
    pub reason: Reason,
    /// For people.
    pub message: String,
}

fn desired(kind: Kind, status: bool, reason: Reason, message: impl Into<String>) -> Desired {
    Desired {
        kind,
        status,
        reason,
        message: message.into(),
    }
}

/// The five conditions, from Ready's status and reason and whether the sink is still moving
/// (`reconciling`), failed for good (`stalled`), or degraded (`problem`, with its message).
struct Summary {
    ready: (bool, Reason, String),
    reconciling: Option<(Reason, String)>,
    stalled: Option<(Reason, String)>,
    degraded: Option<(Reason, String)>,
}

impl Summary {
    fn conditions(self) -> Vec<Desired> {
        let (ready, ready_reason, ready_message) = self.ready;
        let settled_reason = if ready {
            ready_reason
        } else {
            Reason::AsExpected
        };
        let reconciling = match &self.reconciling {
            Some((reason, message)) => desired(Kind::Reconciling, true, *reason, message.clone()),
            None => desired(
                Kind::Reconciling,
                false,
                settled_reason,
                "nothing left to do until the spec changes",
            ),
        };
        let progressing = match &self.reconciling {
            Some((reason, message)) => desired(Kind::Progressing, true, *reason, message.clone()),
            None => desired(
                Kind::Progressing,
                false,
                match &self.stalled {
                    Some((reason, _)) => *reason,
                    None if ready_reason == Reason::WorkersReady => Reason::RolledOut,
                    None => ready_reason,
                },
                match &self.stalled {
                    Some(_) => "waiting for a corrected spec",
                    None => "workers match the spec",
                },
            ),
        };
        let stalled = match self.stalled {
            Some((reason, message)) => desired(Kind::Stalled, true, reason, message),
            None => desired(
                Kind::Stalled,
                false,
                Reason::AsExpected,
                "nothing is in the way",
            ),
        };
        let degraded = match self.degraded {
            Some((reason, message)) => desired(Kind::Degraded, true, reason, message),
            None => desired(
                Kind::Degraded,
                false,
                Reason::AsExpected,
                "the spec is valid",
            ),
        };
        vec![
            desired(Kind::Ready, ready, ready_reason, ready_message),
            reconciling,
            stalled,
            progressing,
            degraded,
        ]
    }
}

/// Conditions for a spec that cannot run now. Permanent problems stall the sink; a transient one
/// (Cassandra unreachable) keeps it reconciling, for the operator retries.
pub fn invalid(problems: &[Problem]) -> Vec<Desired> {
    let first = problems
        .iter()
        .find(|problem| problem.reason.is_permanent())
        .or(problems.first());
    let reason = first.map_or(Reason::InvalidStatement, |problem| problem.reason);
    let message = problems
        .iter()
        .map(|problem| problem.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let permanent = reason.is_permanent();
    Summary {
        ready: (
            false,
            reason,
            if permanent {
                "the spec cannot run; see Stalled".to_owned()
            } else {
                "waiting for the sink's servers; see Reconciling".to_owned()
            },
        ),
        reconciling: (!permanent).then(|| (reason, message.clone())),
        stalled: permanent.then(|| (reason, message.clone())),
        degraded: Some((reason, message)),
    }
    .conditions()
}

/// Conditions for a valid, running spec, from the workers' state.
pub fn running(workers: Workers) -> Vec<Desired> {
    let all_ready =
        workers.observed && workers.updated >= workers.wanted && workers.ready >= workers.wanted;
    let ready_message = format!("{} of {} workers ready", workers.ready, workers.wanted);
    if all_ready {
        return Summary {
            ready: (true, Reason::WorkersReady, ready_message),
            reconciling: None,
            stalled: None,
            degraded: None,
        }
        .conditions();
    }
    Summary {
        ready: (
            false,
            Reason::WorkersNotReady,
            format!("{ready_message}; a worker is ready once connected and committing"),
        ),
        reconciling: Some((
            Reason::RollingOut,
            format!("{} of {} workers updated", workers.updated, workers.wanted),
        )),
        stalled: None,
        degraded: None,
    }
    .conditions()
}

/// Conditions for a running spec whose topic does not exist (yet): the workers run and wait for it,
/// so the sink is reconciling, not stalled (the topic is often created after the sink, by the same
/// GitOps sync), and not ready, saying which topic.
pub fn topic_missing(message: String, workers: Workers) -> Vec<Desired> {
    Summary {
        ready: (
            false,
            Reason::TopicMissing,
            format!(
                "{} of {} workers ready, waiting for the topic; see Reconciling",
                workers.ready, workers.wanted
            ),
        ),
        reconciling: Some((Reason::TopicMissing, message.clone())),
        stalled: None,
        degraded: Some((Reason::TopicMissing, message)),
    }
    .conditions()
}

/// Conditions for a running spec whose workers stop on a failure a restart cannot cure (read from
/// their pods' last termination): stalled, with the worker's own reason and message.
pub fn worker_failed(message: String) -> Vec<Desired> {
    Summary {
        ready: (
            false,
            Reason::WorkerFailed,
            "a worker stopped on a failure that restarting it cannot cure; see Stalled".to_owned(),
        ),
        reconciling: None,
        stalled: Some((Reason::WorkerFailed, message.clone())),
        degraded: Some((Reason::WorkerFailed, message)),
    }
    .conditions()
}

/// Conditions for a paused or stopped sink: Ready once every worker is gone, which is what the spec
/// asks for.
pub fn halted(state: SinkState, workers: Workers) -> Vec<Desired> {
    let reason = match state {
        SinkState::Paused => Reason::Paused,
        _ => Reason::Stopped,
    };
    let word = reason.as_str().to_lowercase();
    let gone = workers.observed && workers.existing == 0;
    Summary {
        ready: (
            gone,
            reason,
            if gone {
                format!("spec.state is {word}: no worker runs; committed positions are kept")
            } else {
                format!("spec.state is {word}: waiting for the workers to leave")
            },
        ),
        reconciling: (!gone).then(|| {
            (
                Reason::Stopping,
                format!(
                    "{} workers still committing and releasing their partitions",
                    workers.existing
                ),
            )
        }),
        stalled: None,
        degraded: None,
    }
    .conditions()
}

/// Conditions with timestamps: an unchanged condition keeps its previous `lastTransitionTime`.
pub fn conditions(
    previous: &[Condition],
    desired: Vec<Desired>,
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    desired
        .into_iter()
        .map(|wanted| {
            let status = if wanted.status { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|old| old.type_ == wanted.kind.as_str() && old.status == status)
                .map_or_else(|| now.clone(), |old| old.last_transition_time.clone());
            Condition {
                type_: wanted.kind.as_str().to_owned(),
                status,
                reason: wanted.reason.as_str().to_owned(),
                message: wanted.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid time"))
    }

    fn find(conditions: &[Desired], kind: Kind) -> &Desired {
        conditions
            .iter()
            .find(|condition| condition.kind == kind)
            .expect("every kind is written")
    }

    /// The status kstatus computes from conditions (sigs.k8s.io/cli-utils' generic rules, which the
    /// node tests check with the library itself): Reconciling, then Stalled, then Ready.
    fn kstatus(conditions: &[Desired]) -> &'static str {
        if find(conditions, Kind::Reconciling).status {
            "InProgress"
        } else if find(conditions, Kind::Stalled).status {
            "Failed"
        } else if find(conditions, Kind::Ready).status {
            "Current"
        } else {
            "InProgress"
        }
    }

    const ALL_READY: Workers = Workers {
        wanted: 3,
        ready: 3,
        updated: 3,
        existing: 3,
        observed: true,
    };

    #[test]
    fn every_kind_is_written_once_in_a_fixed_order() {
        for conditions in [
            running(ALL_READY),
            running(Workers::default()),
            halted(SinkState::Stopped, Workers::default()),
            invalid(&[Problem {
                reason: Reason::NotExactlyOnce,
                message: "x".into(),
            }]),
            worker_failed("x".into()),
            topic_missing("x".into(), ALL_READY),
        ] {
            let kinds: Vec<Kind> = conditions.iter().map(|condition| condition.kind).collect();
            assert_eq!(
                kinds,
                vec![
                    Kind::Ready,
                    Kind::Reconciling,
                    Kind::Stalled,
                    Kind::Progressing,
                    Kind::Degraded
                ]
            );
        }
    }

    #[test]
    fn ready_only_when_every_worker_of_the_current_spec_is_ready() {
        let conditions = running(ALL_READY);
        assert!(find(&conditions, Kind::Ready).status);
        assert_eq!(kstatus(&conditions), "Current");
        for partial in [
            Workers {
                ready: 2,
                ..ALL_READY
            },
            Workers {
                updated: 2,
                ..ALL_READY
            },
            Workers {
                observed: false,
                ..ALL_READY
            },
        ] {
            let conditions = running(partial);
            assert!(!find(&conditions, Kind::Ready).status, "{partial:?}");
            assert!(find(&conditions, Kind::Progressing).status, "{partial:?}");
            assert!(find(&conditions, Kind::Reconciling).status, "{partial:?}");
            assert_eq!(kstatus(&conditions), "InProgress", "{partial:?}");
        }
    }

    #[test]
    fn a_permanent_problem_stalls_the_sink_with_its_reason_and_every_message() {
        let problems = vec![
            Problem {
                reason: Reason::CassandraUnreachable,
                message: "a".into(),
            },
            Problem {
                reason: Reason::NotExactlyOnce,
                message: "b".into(),
            },
        ];
        let conditions = invalid(&problems);
        let stalled = find(&conditions, Kind::Stalled);
        assert!(stalled.status);
        assert_eq!(stalled.reason, Reason::NotExactlyOnce, "the permanent one");
        assert_eq!(stalled.message, "a; b");
        assert!(find(&conditions, Kind::Degraded).status);
        assert!(!find(&conditions, Kind::Ready).status);
        assert!(!find(&conditions, Kind::Reconciling).status);
        assert_eq!(kstatus(&conditions), "Failed");
    }

    #[test]
    fn a_transient_problem_keeps_the_sink_reconciling_not_stalled() {
        let conditions = invalid(&[Problem {
            reason: Reason::CassandraUnreachable,
            message: "no answer".into(),
        }]);
        assert!(!find(&conditions, Kind::Stalled).status);
        let reconciling = find(&conditions, Kind::Reconciling);
        assert!(reconciling.status);
        assert_eq!(reconciling.reason, Reason::CassandraUnreachable);
        assert!(find(&conditions, Kind::Degraded).status, "still shown");
        assert_eq!(kstatus(&conditions), "InProgress");
    }

    #[test]
    fn a_missing_topic_keeps_the_sink_reconciling_and_not_ready_even_with_every_worker_ready() {
        let conditions = topic_missing(
            "spec.source.kafka.topic: orders does not exist".into(),
            ALL_READY,
        );
        assert!(!find(&conditions, Kind::Ready).status);
        assert_eq!(find(&conditions, Kind::Ready).reason, Reason::TopicMissing);
        let reconciling = find(&conditions, Kind::Reconciling);
        assert!(reconciling.status);
        assert!(
            reconciling.message.contains("orders"),
            "{}",
            reconciling.message
        );
        assert!(
            !find(&conditions, Kind::Stalled).status,
            "it may be created any time"
        );
        assert_eq!(kstatus(&conditions), "InProgress");
        assert!(!Reason::TopicMissing.is_permanent());
    }

    #[test]
    fn a_failed_worker_stalls_the_sink() {
        let conditions = worker_failed("reason=RangeGone: partition 0".into());
        assert_eq!(kstatus(&conditions), "Failed");
        assert_eq!(
            find(&conditions, Kind::Stalled).reason,
            Reason::WorkerFailed
        );
    }

    #[test]
    fn a_halted_sink_is_ready_once_its_workers_are_gone() {
        for state in [SinkState::Paused, SinkState::Stopped] {
            let leaving = halted(
                state,
                Workers {
                    wanted: 0,
                    existing: 2,
                    ..ALL_READY
                },
            );
            assert!(!find(&leaving, Kind::Ready).status);
            assert_eq!(find(&leaving, Kind::Reconciling).reason, Reason::Stopping);
            assert_eq!(kstatus(&leaving), "InProgress");
            let gone = halted(
                state,
                Workers {
                    observed: true,
                    ..Workers::default()
                },
            );
            let ready = find(&gone, Kind::Ready);
            assert!(ready.status, "{state:?}");
            assert!(matches!(ready.reason, Reason::Paused | Reason::Stopped));
            assert_eq!(kstatus(&gone), "Current", "{state:?}");
        }
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let first = conditions(&[], running(Workers::default()), Some(1), time(100));
        let again = conditions(&first, running(Workers::default()), Some(1), time(200));
        assert_eq!(first, again, "nothing changed, nothing is rewritten");
        let ready = Workers {
            wanted: 1,
            ready: 1,
            updated: 1,
            existing: 1,
            observed: true,
        };
        let changed = conditions(&again, running(ready), Some(1), time(300));
        assert_eq!(changed[0].last_transition_time, time(300));
        assert_eq!(
            changed[4].last_transition_time,
            time(100),
            "Degraded stayed False"
        );
    }
}
