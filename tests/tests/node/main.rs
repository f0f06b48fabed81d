//! End-to-end tests on a real Kubernetes node (`scripts/localenv.sh up --node`): the operator
//! installed by Helm or by the plain manifests runs as a pod under the chart's ServiceAccount and
//! RBAC, the workers run as pods from the project's own images, and the table is checked against the
//! records produced, exactly once, with every key updated many times.
//!
//! A test binary of its own: it needs the node, which the other tests do not. Its tests take turns
//! ([`one_at_a_time`]): the node has two cores, and the plain manifests install an operator that
//! watches every namespace.

use tokio::sync::{Mutex, MutexGuard};

mod chart;
mod crash;
mod kstatus;
mod lifecycle;
mod manifests;
mod scale;
mod secrets;
mod upgrade;

/// Held by each test for its whole run.
async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::const_new(());
    TURN.lock().await
}
