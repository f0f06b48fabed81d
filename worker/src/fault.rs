//! Crash points for testing recovery: `CASSANDRA_SINK_FAULT=<point>:<n>` makes the process abort (no
//! cleanup, like `kill -9`) the n-th time it reaches `<point>`. Unset, each check is one relaxed load.
//!
//! Points: `after-pending` (pending recorded, nothing written), `mid-write` (about half of a
//! checkpoint's writes acknowledged), `before-commit` (all written, not committed), `after-commit`.

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

/// Aborts the process if `point` is armed and reached for the n-th time.
pub fn point(point: &str) {
    if let Some(armed) = armed()
        && armed.point == point
        && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.after
    {
        eprintln!("{VARIABLE}: aborting at {point}");
        std::process::abort();
    }
}
