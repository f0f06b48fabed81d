//! The status a sink shows: conditions Ready, Progressing and Degraded, decided from what the operator
//! observed, without I/O. A condition's `lastTransitionTime` changes only when its status does, so
//! reconciling an unchanged sink writes an identical status (no spurious updates).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::SinkState;
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
    /// True when the Deployment controller has seen the latest Deployment spec.
    pub observed: bool,
}

/// A desired condition, before timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `Ready`, `Progressing` or `Degraded`.
    pub kind: &'static str,
    /// True or false.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For people.
    pub message: String,
}

fn desired(kind: &'static str, status: bool, reason: &str, message: String) -> Desired {
    Desired {
        kind,
        status,
        reason: reason.to_owned(),
        message,
    }
}

/// Conditions for a spec that cannot run.
pub fn invalid(problems: &[Problem]) -> Vec<Desired> {
    let reason = problems.first().map_or("Invalid", |problem| problem.reason);
    let message = problems
        .iter()
        .map(|problem| problem.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        desired(
            "Ready",
            false,
            reason,
            "the spec cannot run; see Degraded".to_owned(),
        ),
        desired(
            "Progressing",
            false,
            reason,
            "waiting for a corrected spec".to_owned(),
        ),
        desired("Degraded", true, reason, message),
    ]
}

/// Conditions for a valid spec, from the workers' state.
pub fn running(workers: Workers) -> Vec<Desired> {
    let all_ready =
        workers.observed && workers.updated >= workers.wanted && workers.ready >= workers.wanted;
    let ready = if all_ready {
        desired(
            "Ready",
            true,
            "WorkersReady",
            format!("{} of {} workers ready", workers.ready, workers.wanted),
        )
    } else {
        desired(
            "Ready",
            false,
            "WorkersNotReady",
            format!(
                "{} of {} workers ready; a worker is ready once connected and committing",
                workers.ready, workers.wanted
            ),
        )
    };
    let progressing = if all_ready {
        desired(
            "Progressing",
            false,
            "RolledOut",
            "workers match the spec".to_owned(),
        )
    } else {
        desired(
            "Progressing",
            true,
            "RollingOut",
            format!("{} of {} workers updated", workers.updated, workers.wanted),
        )
    };
    vec![
        ready,
        progressing,
        desired(
            "Degraded",
            false,
            "AsExpected",
            "the spec is valid".to_owned(),
        ),
    ]
}

/// Conditions for a paused or stopped sink: not Ready, by design, once its workers are gone.
pub fn halted(state: SinkState, workers: Workers) -> Vec<Desired> {
    let reason = match state {
        SinkState::Paused => "Paused",
        _ => "Stopped",
    };
    let gone = workers.ready == 0 && workers.updated == 0;
    vec![
        desired(
            "Ready",
            false,
            reason,
            format!(
                "spec.state is {}; committed positions are kept",
                reason.to_lowercase()
            ),
        ),
        if gone {
            desired(
                "Progressing",
                false,
                reason,
                "all workers stopped".to_owned(),
            )
        } else {
            desired(
                "Progressing",
                true,
                "Stopping",
                format!(
                    "{} workers still committing and releasing their partitions",
                    workers.ready
                ),
            )
        },
        desired(
            "Degraded",
            false,
            "AsExpected",
            "the spec is valid".to_owned(),
        ),
    ]
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
                .find(|old| old.type_ == wanted.kind && old.status == status)
                .map_or_else(|| now.clone(), |old| old.last_transition_time.clone());
            Condition {
                type_: wanted.kind.to_owned(),
                status,
                reason: wanted.reason,
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

    #[test]
    fn ready_only_when_every_worker_of_the_current_spec_is_ready() {
        let all = Workers {
            wanted: 3,
            ready: 3,
            updated: 3,
            observed: true,
        };
        assert!(running(all)[0].status);
        for partial in [
            Workers { ready: 2, ..all },
            Workers { updated: 2, ..all },
            Workers {
                observed: false,
                ..all
            },
        ] {
            let conditions = running(partial);
            assert!(!conditions[0].status, "{partial:?}");
            assert!(conditions[1].status, "progressing while {partial:?}");
        }
    }

    #[test]
    fn an_invalid_spec_is_degraded_with_the_first_reason_and_every_message() {
        let problems = vec![
            Problem {
                reason: "NotExactlyOnce",
                message: "a".into(),
            },
            Problem {
                reason: "NoContactPoints",
                message: "b".into(),
            },
        ];
        let conditions = invalid(&problems);
        assert_eq!(conditions[2].kind, "Degraded");
        assert!(conditions[2].status);
        assert_eq!(conditions[2].reason, "NotExactlyOnce");
        assert_eq!(conditions[2].message, "a; b");
        assert!(!conditions[0].status);
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
            observed: true,
        };
        let changed = conditions(&again, running(ready), Some(1), time(300));
        assert_eq!(changed[0].last_transition_time, time(300));
        assert_eq!(
            changed[2].last_transition_time,
            time(100),
            "Degraded stayed False"
        );
    }
}
