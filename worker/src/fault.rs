//! Crash points for testing recovery: `CASSANDRA_SINK_FAULT=<point>:<n>` makes the process abort (no
//! cleanup, like `kill -9`) the n-th time it reaches `<point>`, or, for a failure point, makes that
//! step fail the n-th time. Unset, each check is one relaxed load.
//!
//! Crash points: `after-pending` (pending recorded, nothing written), `mid-write` (about half of a
//! checkpoint's writes acknowledged), `before-commit` (all written, not committed), `after-commit`.
//! Failure points: `assign` (librdkafka refusing to assign the claimed partitions).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const VARIABLE: &str = "CASSANDRA_SINK_FAULT";

struct Armed {
    point: String,
    after: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(VARIABLE).ok()?;
            let (point, after) = value.split_once(':').unwrap_or((value.as_str(), "1"));
            Some(Armed {
                point: point.to_owned(),
                after: after.parse().unwrap_or(1),
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// True when `point` is armed and reached for the n-th time.
fn reached(point: &str) -> bool {
    armed().is_some_and(|armed| {
        armed.point == point && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.after
    })
}

/// Aborts the process if `point` is armed and reached for the n-th time.
pub fn point(point: &str) {
    if reached(point) {
        eprintln!("{VARIABLE}: aborting at {point}");
        std::process::abort();
    }
}

/// True when the failure `point` is armed and reached for the n-th time: the caller then fails that
/// step as it would for real.
pub fn fails(point: &str) -> bool {
    let fails = reached(point);
    if fails {
        eprintln!("{VARIABLE}: failing {point}");
    }
    fails
}
