//! Leader election through a Lease, so that several operator replicas can run and exactly one
//! reconciles. A replica that loses the lease stops reconciling at once and the process exits, to be
//! restarted and campaign again with a clean state.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The Lease could not be created or read.
    #[error("leader election with Lease {namespace}/{name}: {message}")]
    Lease {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What failed.
        message: String,
    },
    /// This replica was the leader and lost the lease.
    #[error(
        "lost the Lease {namespace}/{name} to another replica; exiting so that a restart campaigns again"
    )]
    Lost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
    },
}

/// Where the Lease is and who this replica is.
#[derive(Debug, Clone)]
pub struct Election {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a lease is valid without renewal.
    pub duration_seconds: u64,
}

/// Runs `work` while this replica holds the lease. Returns when `work` ends, or fails when the lease
/// is lost.
pub async fn while_leader<F>(client: Client, election: Election, work: F) -> Result<(), LeaderError>
where
    F: std::future::Future<Output = ()>,
{
    let lease_error = |message: String| LeaderError::Lease {
        namespace: election.namespace.clone(),
        name: election.name.clone(),
        message,
    };
    let manager = LeaseManagerBuilder::new(client, &election.name)
        .with_namespace(&election.namespace)
        .with_identity(&election.identity)
        .with_duration(election.duration_seconds)
        .with_grace(election.duration_seconds.div_ceil(3).max(1))
        // One field manager per replica: the Lease is taken by server-side apply, and only distinct
        // managers make a second replica's concurrent take-over conflict instead of silently winning.
        .with_field_manager(format!("cassandra-sink-operator-{}", election.identity))
        .build()
        .await
        .map_err(|error| lease_error(error.to_string()))?;
    let (mut leading, _task) = manager.watch().await;
    tracing::info!(identity = %election.identity, lease = %election.name, "waiting to lead");
    while !*leading.borrow_and_update() {
        leading
            .changed()
            .await
            .map_err(|error| lease_error(error.to_string()))?;
    }
    tracing::info!(identity = %election.identity, "leading: reconciling");
    tokio::select! {
        () = work => Ok(()),
        lost = async {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                    return;
                }
            }
        } => {
            let () = lost;
            Err(LeaderError::Lost { namespace: election.namespace.clone(), name: election.name.clone() })
        }
    }
}
