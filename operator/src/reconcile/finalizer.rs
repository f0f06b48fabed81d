//! The finalizer that applies `deletionPolicy: Delete` to a sink's committer rows, present only while
//! that policy asks for it.
//!
//! # Guarantees
//! - With `Delete`, the finalizer is added before anything else is done for the sink, and removed
//!   only once the committer rows are gone (kube-runtime's finalizer helper).
//! - With `Retain`, the sink carries no finalizer of ours: one left from an earlier `Delete` is
//!   removed at the next reconcile, so deleting the sink never waits for the operator, and a
//!   `helm uninstall` of the operator before its sinks leaves nothing stuck Terminating.
//!
//! # Caveats
//! A sink switched from `Delete` to `Retain` after its deletion started keeps its rows: the policy at
//! the time of the last reconcile wins.

use std::future::Future;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Error as HelperError, Event, finalizer};

use crate::access::Secrets;
use crate::committer;
use crate::crd::{CassandraSink, DeletionPolicy};

use super::{Context, ReconcileError};

/// The finalizer's name.
pub const FINALIZER: &str = "cassandra-sink.io/committer-rows";

/// Adding or removing the finalizer failed.
#[derive(Debug, thiserror::Error)]
#[error("the finalizer {FINALIZER} of {sink}: {source}")]
pub struct FinalizerError {
    /// `namespace/name`.
    sink: String,
    /// The API error.
    source: kube::Error,
}

/// Runs `apply` for a sink that is not being deleted, with the finalizer its deletion policy needs;
/// applies the policy to a sink being deleted.
pub async fn guard<F, Fut>(
    context: &Context,
    sink: Arc<CassandraSink>,
    apply: F,
) -> Result<Action, ReconcileError>
where
    F: FnOnce(Arc<CassandraSink>) -> Fut,
    Fut: Future<Output = Result<Action, ReconcileError>>,
{
    let namespace = sink.namespace().unwrap_or_default();
    let name = format!("{namespace}/{}", sink.name_any());
    let api: Api<CassandraSink> = Api::namespaced(context.client.clone(), &namespace);
    if sink.spec.deletion_policy == DeletionPolicy::Delete {
        return finalizer(&api, FINALIZER, sink, |event| async move {
            match event {
                Event::Apply(sink) => apply(sink).await,
                Event::Cleanup(sink) => delete_rows(context, &sink).await,
            }
        })
        .await
        .map_err(|error| match error {
            HelperError::ApplyFailed(error) | HelperError::CleanupFailed(error) => error,
            HelperError::AddFinalizer(source) | HelperError::RemoveFinalizer(source) => {
                ReconcileError::Finalizer(FinalizerError { sink: name, source })
            }
            HelperError::UnnamedObject | HelperError::InvalidFinalizer => {
                ReconcileError::Build(crate::build::BuildError::Missing("name"))
            }
        });
    }
    release(&api, &sink).await?;
    if sink.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    apply(sink).await
}

/// Removes our finalizer when the sink carries it. The patch names the resource version it was
/// computed from, so a concurrent change to the finalizers makes it fail (and the reconcile retry)
/// instead of dropping someone else's.
async fn release(api: &Api<CassandraSink>, sink: &CassandraSink) -> Result<(), FinalizerError> {
    if !sink.finalizers().iter().any(|name| name == FINALIZER) {
        return Ok(());
    }
    let others: Vec<&String> = sink
        .finalizers()
        .iter()
        .filter(|name| *name != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": { "finalizers": others, "resourceVersion": sink.resource_version() }
    });
    api.patch(
        &sink.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| FinalizerError {
        sink: format!(
            "{}/{}",
            sink.namespace().unwrap_or_default(),
            sink.name_any()
        ),
        source,
    })?;
    tracing::info!(sink = %sink.name_any(), "finalizer removed (deletionPolicy: Retain)");
    Ok(())
}

/// `deletionPolicy: Delete`: the sink's committer rows go. Its children go with it through their
/// owner references.
async fn delete_rows(context: &Context, sink: &CassandraSink) -> Result<Action, ReconcileError> {
    let secrets = Secrets::new(&context.client, &sink.namespace().unwrap_or_default());
    let session = context.sessions.committer_session(&secrets, sink).await?;
    let rows = committer::delete(&session, sink).await?;
    tracing::info!(sink = %sink.name_any(), rows, "committer rows deleted (deletionPolicy: Delete)");
    Ok(Action::await_change())
}
