//! The worker container's resources: what the spec asks for, or defaults sized from its checkpoint
//! limits, and whether the checkpoint limits fit in the memory limit at all.
//!
//! A worker holds up to two checkpoints of records (one being written, the next one read ahead), each
//! bounded by `checkpoint.maxBytes`, on top of about 64 MiB for itself (the binary, librdkafka's
//! queues, the driver's connections; peak RSS measured in docs/benchmarks.md stays under that).
//! A limit below that sum would be an out-of-memory kill under load, so it is refused up front.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::reason::Reason;
use crate::validate::Problem;

const MIB: u64 = 1024 * 1024;

/// What a worker needs besides its checkpoints.
pub const WORKER_BASE_BYTES: u64 = 64 * MIB;

/// The default memory limit, when the spec sets none and the checkpoints need no more.
pub const DEFAULT_LIMIT_BYTES: u64 = 256 * MIB;

/// The least memory a worker with these checkpoint limits needs.
pub fn needed_bytes(checkpoint_max_bytes: u64) -> u64 {
    WORKER_BASE_BYTES.saturating_add(checkpoint_max_bytes.saturating_mul(2))
}

/// A Kubernetes quantity of bytes (`256Mi`, `1G`, `1.5Gi`, `268435456`), or `None` when it is not
/// one.
pub fn bytes(quantity: &Quantity) -> Option<u64> {
    let text = quantity.0.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let value = number * factor;
    (value.is_finite() && value >= 0.0).then_some(value.ceil() as u64)
}

/// The container's resources: the spec's, with a memory limit sized from the checkpoints where the
/// spec sets none, and the scheduler's defaults for what it leaves out.
pub fn worker(
    spec: Option<&ResourceRequirements>,
    checkpoint_max_bytes: u64,
) -> ResourceRequirements {
    let mut resources = spec.cloned().unwrap_or_default();
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    requests
        .entry("cpu".to_owned())
        .or_insert_with(|| Quantity("250m".to_owned()));
    requests
        .entry("memory".to_owned())
        .or_insert_with(|| Quantity("128Mi".to_owned()));
    let limits = resources.limits.get_or_insert_with(BTreeMap::new);
    limits.entry("memory".to_owned()).or_insert_with(|| {
        let needed = needed_bytes(checkpoint_max_bytes).max(DEFAULT_LIMIT_BYTES);
        Quantity(format!("{}Mi", needed.div_ceil(MIB)))
    });
    resources
}

/// A problem when the spec's memory limit cannot hold the checkpoints, or cannot be read.
pub fn check(spec: Option<&ResourceRequirements>, checkpoint_max_bytes: u64) -> Option<Problem> {
    let limit = spec?.limits.as_ref()?.get("memory")?;
    let needed = needed_bytes(checkpoint_max_bytes);
    match bytes(limit) {
        None => Some(Problem {
            reason: Reason::InsufficientMemory,
            message: format!(
                "spec.resources.limits.memory is {:?}, which is not a quantity of bytes (e.g. 512Mi)",
                limit.0
            ),
        }),
        Some(limit_bytes) if limit_bytes < needed => Some(Problem {
            reason: Reason::InsufficientMemory,
            message: format!(
                "spec.resources.limits.memory is {} but a worker needs at least {} MiB: two \
                 checkpoints of spec.checkpoint.maxBytes ({} MiB each, one written while the next is \
                 read) and {} MiB for itself; raise the limit or lower checkpoint.maxBytes",
                limit.0,
                needed.div_ceil(MIB),
                checkpoint_max_bytes.div_ceil(MIB),
                WORKER_BASE_BYTES / MIB
            ),
        }),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(memory: &str) -> ResourceRequirements {
        ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity(memory.to_owned()),
            )])),
            ..ResourceRequirements::default()
        }
    }

    #[test]
    fn quantities_of_bytes() {
        for (text, expected) in [
            ("256Mi", Some(256 * MIB)),
            ("1Gi", Some(1024 * MIB)),
            ("1.5Gi", Some(1536 * MIB)),
            ("300M", Some(300_000_000)),
            ("268435456", Some(268_435_456)),
            ("1k", Some(1000)),
            ("12Qi", None),
            ("lots", None),
        ] {
            assert_eq!(bytes(&Quantity(text.to_owned())), expected, "{text}");
        }
    }

    #[test]
    fn the_default_limit_holds_the_default_checkpoints_and_grows_with_them() {
        let default = worker(None, 64 * MIB);
        assert_eq!(
            default.limits.as_ref().expect("limits")["memory"],
            Quantity("256Mi".to_owned())
        );
        assert_eq!(
            default.requests.as_ref().expect("requests")["cpu"].0,
            "250m"
        );
        let large = worker(None, 512 * MIB);
        assert_eq!(
            large.limits.as_ref().expect("limits")["memory"],
            Quantity("1088Mi".to_owned())
        );
        assert!(
            check(None, 512 * MIB).is_none(),
            "nothing set, nothing refused"
        );
    }

    #[test]
    fn a_limit_that_cannot_hold_two_checkpoints_is_refused_with_the_figures() {
        assert!(check(Some(&limit("256Mi")), 64 * MIB).is_none());
        assert!(
            check(Some(&limit("192Mi")), 64 * MIB).is_none(),
            "exactly enough"
        );
        let problem = check(Some(&limit("256Mi")), 128 * MIB).expect("refused");
        assert_eq!(problem.reason, Reason::InsufficientMemory);
        assert!(
            problem.message.contains("at least 320 MiB"),
            "{}",
            problem.message
        );
        assert!(check(Some(&limit("much")), 64 * MIB).is_some());
    }

    #[test]
    fn what_the_spec_sets_is_kept() {
        let mut spec = limit("2Gi");
        spec.requests = Some(BTreeMap::from([(
            "cpu".to_owned(),
            Quantity("1".to_owned()),
        )]));
        let resources = worker(Some(&spec), 64 * MIB);
        assert_eq!(
            resources.limits.as_ref().expect("limits")["memory"].0,
            "2Gi"
        );
        assert_eq!(resources.requests.as_ref().expect("requests")["cpu"].0, "1");
        assert_eq!(
            resources.requests.as_ref().expect("requests")["memory"].0,
            "128Mi"
        );
    }
}
