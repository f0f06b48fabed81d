//! One reconcile of a CassandraSink, as a pipeline whose ends alone touch servers:
//!
//! 1. [`dereference`]: every read the decisions need (the referenced Secrets, the topic's
//!    watermarks) into one [`Observed`](dereference::Observed) value;
//! 2. [`crate::validate`] (pure): what is wrong with the spec itself;
//! 3. [`crate::schema`]: the DDL and a PREPARE of `insertQuery` on the live cluster, once per change
//!    of what they depend on, so a statement Cassandra refuses stops here, before any worker runs;
//! 4. [`crate::build`] (pure): the children;
//! 5. [`apply`]: server-side apply of the children; what the Deployment and its pods report;
//! 6. [`positions`]: a requested position reset, and progress from the committer table;
//! 7. [`crate::status`] (pure): the conditions, then one status patch, only when it changed.
//!
//! The finalizer is there only while deleting the sink has something to do
//! (`deletionPolicy: Delete`), so a sink that keeps its positions is never left Terminating.

pub mod apply;
pub mod dereference;
pub mod events;
pub mod finalizer;
pub mod positions;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::{Client, ResourceExt};

use crate::access::{AccessError, Secrets};
use crate::build::{self, BuildError, Settings};
use crate::committer::{self, Sessions};
use crate::crd::{CassandraSink, CassandraSinkStatus, SinkState};
use crate::metrics::Metrics;
use crate::schema;
use crate::status;
use crate::validate::validate;

/// The field manager of everything the operator writes.
pub const MANAGER: &str = "cassandra-sink-operator";

/// Errors of one reconcile; each variant's name is its metric label. Problems with the sink itself
/// are not errors: they are its status.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Building the children failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Adding or removing the finalizer failed.
    #[error(transparent)]
    Finalizer(#[from] finalizer::FinalizerError),
    /// A Secret could not be read.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The committer rows could not be deleted (`deletionPolicy: Delete`).
    #[error(transparent)]
    Cleanup(#[from] committer::CommitterError),
    /// The API server refused or failed a request.
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
}

impl ReconcileError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Build(_) => "build",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Access(_) => "access",
            ReconcileError::Cleanup(_) => "cleanup",
            ReconcileError::Apply(_) => "kube",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// How children are shaped.
    pub settings: Settings,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes an Event on each condition transition.
    pub recorder: Recorder,
    /// Sessions on the sinks' Cassandra clusters, for the DDL, progress, resets and clean-up.
    pub sessions: Sessions,
    /// Clients of the sinks' Kafka clusters, for lag and resets.
    pub kafka: crate::kafka::Clients,
    /// How often a running sink's progress is read from its committer table.
    pub progress_interval: Duration,
    /// Most reconciles at once (per watched namespace). Bounds the operator's memory when many
    /// sinks change together, as on start-up.
    pub concurrency: u16,
}

/// Brings the children in line with the sink and reports what is observed in its status.
pub async fn reconcile(
    sink: Arc<CassandraSink>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    context.metrics.reconciles.inc();
    let result = finalizer::guard(&context, sink, |sink| run(sink, &context)).await;
    context
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The pipeline, for a sink that is not being deleted.
async fn run(sink: Arc<CassandraSink>, context: &Context) -> Result<Action, ReconcileError> {
    let sink = sink.as_ref();
    let namespace = sink.namespace().unwrap_or_default();
    let old = sink.status.clone().unwrap_or_default();
    let running = sink.spec.state == SinkState::Running;
    // Every Secret this reconcile needs is read once, here or by the connections below.
    let secrets = Secrets::new(&context.client, &namespace);

    let observed = dereference::observe(&secrets, sink, context).await?;
    let mut problems = validate(&sink.spec);
    problems.extend(observed.secret_problems.iter().cloned());
    // What the servers say can change without any change to the sink (a keyspace or topic created, a
    // grant given): those problems are looked at again on the timer.
    let mut ask_again = false;
    if problems.is_empty()
        && running
        && let Some(problem) = &observed.kafka_problem
    {
        problems.push(problem.clone());
        ask_again = true;
    }
    let mut checked = old.applied_schema.clone();
    if problems.is_empty() && running {
        match schema::ensure(&secrets, &context.sessions, sink, checked.as_deref()).await {
            Ok(digest) => checked = Some(digest),
            Err(problem) => {
                problems.push(problem);
                ask_again = true;
            }
        }
    }

    let (desired, workers) = if problems.is_empty() {
        let children = build::children(sink, &context.settings, &observed.secrets)?;
        let applied = apply::children(&context.client, &children).await?;
        let desired = match (sink.spec.state, &applied.failure) {
            (SinkState::Running, Some(failure)) => status::worker_failed(failure.clone()),
            (SinkState::Running, None) => match &observed.topic_missing {
                Some(message) => status::topic_missing(message.clone(), applied.workers),
                None => status::running(applied.workers),
            },
            (state, _) => status::halted(state, applied.workers),
        };
        (desired, Some(applied.workers))
    } else {
        tracing::info!(sink = %sink.name_any(), %namespace, ?problems, "the spec cannot run now");
        (status::invalid(&problems), None)
    };

    let valid = workers.is_some();
    let gone = workers.is_some_and(|workers| workers.observed && workers.existing == 0);
    let positions_reset = if valid {
        positions::reset(sink, context, &secrets, observed.watermarks.as_ref(), gone).await
    } else {
        old.positions_reset.clone()
    };
    let progress = if valid {
        positions::progress(sink, context, &secrets, observed.watermarks.as_ref()).await
    } else {
        None
    };

    let status = CassandraSinkStatus {
        observed_generation: sink.metadata.generation,
        conditions: status::conditions(
            &old.conditions,
            desired,
            sink.metadata.generation,
            Time(k8s_openapi::jiff::Timestamp::now()),
        ),
        replicas: workers.map_or(0, |workers| workers.ready),
        selector: Some(build::selector_string(&sink.name_any())),
        progress: progress.or_else(|| old.progress.clone()),
        applied_schema: checked,
        positions_reset,
    };
    events::transitions(context, sink, &status).await;
    if sink.status.as_ref() != Some(&status) {
        write_status(&context.client, sink, &status).await?;
    }
    // Changes to the sink and its children wake the controller; progress and lag are read on a timer,
    // and what the servers refused is asked again on it. A spec that cannot run waits for a change.
    if valid || ask_again {
        Ok(Action::requeue(context.progress_interval))
    } else {
        Ok(Action::await_change())
    }
}

/// One server-side apply of the status subresource.
async fn write_status(
    client: &Client,
    sink: &CassandraSink,
    status: &CassandraSinkStatus,
) -> Result<(), apply::ApplyError> {
    let namespace = sink.namespace().unwrap_or_default();
    let name = sink.name_any();
    let api: Api<CassandraSink> = Api::namespaced(client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": "cassandra-sink.io/v1alpha1",
        "kind": "CassandraSink",
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| apply::ApplyError {
        operation: format!("writing the status of {namespace}/{name}"),
        source,
    })?;
    Ok(())
}

/// Retries a failed reconcile after a pause.
pub fn error_policy(
    sink: Arc<CassandraSink>,
    error: &ReconcileError,
    context: Arc<Context>,
) -> Action {
    context.metrics.error(error.kind());
    tracing::warn!(sink = %sink.name_any(), kind = error.kind(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}
