//! The reconcile pipeline: validate → build → apply → status. Only the ends touch the API server; the
//! middle ([`crate::validate`], [`crate::build`], [`crate::status`]) is pure.
//!
//! Children are applied with server-side apply under one field manager and owned by the sink, so the
//! controller is woken by any change to them (an edited Deployment is put back) and Kubernetes garbage
//! collection removes them with the sink.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizing, finalizer};
use kube::runtime::reflector;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::utils::{PredicateConfig, WatchStreamExt};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::{AccessError, Secrets};
use crate::build::{self, SecretsSeen, Settings};
use crate::committer::{self, Sessions};
use crate::crd::{CassandraSink, CassandraSinkStatus, DeletionPolicy, PositionsReset, SinkState};
use crate::kafka::{self, Watermarks};
use crate::metrics::Metrics;
use crate::status::{self, Workers};
use crate::validate::{Problem, validate};
use crate::{progress, reset, schema};

/// The field manager of everything the operator writes.
pub const MANAGER: &str = "cassandra-sink-operator";

/// Errors of one reconcile; each variant's name is its metric label.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Building the children failed.
    #[error(transparent)]
    Build(#[from] build::BuildError),
    /// Adding or removing the finalizer failed, or the clean-up did.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A Secret could not be read.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The committer rows could not be deleted (`deletionPolicy: Delete`).
    #[error(transparent)]
    Cleanup(#[from] committer::CommitterError),
    /// The API server refused or failed a request.
    #[error("{operation}: {source}")]
    Kube {
        /// What was attempted.
        operation: String,
        /// The client error.
        source: kube::Error,
    },
}

impl ReconcileError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Build(_) => "build",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Access(_) => "access",
            ReconcileError::Cleanup(_) => "cleanup",
            ReconcileError::Kube { .. } => "kube",
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
    pub kafka: kafka::Clients,
    /// How often a running sink's progress is read from its committer table.
    pub progress_interval: Duration,
    /// Most reconciles at once (per watched namespace). Bounds the operator's memory when many
    /// sinks change together, as on start-up.
    pub concurrency: u16,
}

/// The finalizer that lets the operator apply the deletion policy to the committer rows.
pub const FINALIZER: &str = "cassandra-sink.io/committer-rows";

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, ReconcileError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| ReconcileError::Kube {
        operation: format!("applying {} {namespace}/{name}", K::kind(&())),
        source,
    })
}

/// Brings the children in line with the sink and reports what is observed in its status.
pub async fn reconcile(
    sink: Arc<CassandraSink>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    context.metrics.reconciles.inc();
    let namespace = sink.namespace().unwrap_or_default();
    let api: Api<CassandraSink> = Api::namespaced(context.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, sink, |event| async {
        match event {
            Finalizing::Apply(sink) => reconcile_inner(&sink, &context).await,
            Finalizing::Cleanup(sink) => cleanup(&sink, &context).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error)
        | kube::runtime::finalizer::Error::CleanupFailed(error) => error,
        other => ReconcileError::Finalizer(other.to_string()),
    });
    context
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// A sink is being deleted: apply its deletion policy to the committer rows. The children go with it
/// through their owner references.
async fn cleanup(sink: &CassandraSink, context: &Context) -> Result<Action, ReconcileError> {
    if sink.spec.deletion_policy == DeletionPolicy::Delete {
        let secrets = Secrets::new(&context.client, &sink.namespace().unwrap_or_default());
        let session = context.sessions.committer_session(&secrets, sink).await?;
        let rows = committer::delete(&session, sink).await?;
        tracing::info!(sink = %sink.name_any(), rows, "committer rows deleted (deletionPolicy: Delete)");
    }
    Ok(Action::await_change())
}

async fn reconcile_inner(
    sink: &CassandraSink,
    context: &Context,
) -> Result<Action, ReconcileError> {
    let namespace = sink.namespace().unwrap_or_default();
    let name = sink.name_any();
    let old = sink.status.clone().unwrap_or_default();

    let started = std::time::Instant::now();
    let mut problems = validate(&sink.spec);
    let running = sink.spec.state == SinkState::Running;
    // Every Secret this reconcile needs is read once, here or by the connections below.
    let secrets = Secrets::new(&context.client, &namespace);
    let seen = check_secrets(&secrets, sink, &mut problems).await?;

    // The DDL runs here, once per change of what it creates, before workers that need the tables.
    let mut applied_schema = old.applied_schema.clone();
    let mut retry_schema = false;
    if problems.is_empty() && running {
        let config = build::sink_config(sink)?;
        let digest = schema::digest(&config);
        if applied_schema.as_deref() != Some(digest.as_str()) {
            match schema::run(&secrets, &context.sessions, sink, &config).await {
                Ok(()) => {
                    tracing::info!(sink = %name, namespace = %namespace, "schema applied");
                    applied_schema = Some(digest);
                }
                Err(error) => {
                    problems.push(error.problem());
                    retry_schema = true;
                }
            }
        }
    }

    let valid = problems.is_empty();
    let (desired, replicas, workers_gone) = if valid {
        let children = build::children(sink, &context.settings, &seen)?;
        apply(&context.client, &namespace, &children.config_map).await?;
        apply(&context.client, &namespace, &children.service).await?;
        let deployment = apply(&context.client, &namespace, &children.deployment).await?;
        let observed = deployment.status.clone().unwrap_or_default();
        let current = observed.observed_generation >= deployment.metadata.generation;
        let workers = Workers {
            wanted: build::replicas(sink),
            ready: observed.ready_replicas.unwrap_or(0),
            updated: observed.updated_replicas.unwrap_or(0),
            observed: current,
        };
        let desired = match sink.spec.state {
            SinkState::Running => status::running(workers),
            state => status::halted(state, workers),
        };
        let gone = current && observed.replicas.unwrap_or(0) == 0;
        (desired, workers.ready, gone)
    } else {
        tracing::info!(sink = %name, namespace = %namespace, problems = ?problems, "invalid spec");
        (status::invalid(&problems), 0, false)
    };

    let applied_after = started.elapsed();
    let watermarks = if valid {
        match context.kafka.watermarks(&secrets, sink).await {
            Ok(watermarks) => Some(watermarks),
            Err(error) => {
                tracing::debug!(sink = %name, %error, "watermarks not read");
                None
            }
        }
    } else {
        None
    };
    let positions_reset = if valid {
        reset_positions(sink, context, &secrets, watermarks.as_ref(), workers_gone).await
    } else {
        old.positions_reset.clone()
    };
    let read_after = started.elapsed();
    let progress = if valid {
        read_progress(sink, context, &secrets, watermarks.as_ref()).await
    } else {
        None
    };
    tracing::debug!(
        sink = %name,
        applied_ms = applied_after.as_millis() as u64,
        kafka_ms = (read_after - applied_after).as_millis() as u64,
        progress_ms = (started.elapsed() - read_after).as_millis() as u64,
        "reconcile phases"
    );

    let status = CassandraSinkStatus {
        observed_generation: sink.metadata.generation,
        conditions: status::conditions(
            &old.conditions,
            desired,
            sink.metadata.generation,
            Time(k8s_openapi::jiff::Timestamp::now()),
        ),
        replicas,
        selector: Some(build::selector_string(&name)),
        progress: progress.or_else(|| old.progress.clone()),
        applied_schema,
        positions_reset,
    };
    publish_transitions(context, sink, &status).await;
    if sink.status.as_ref() != Some(&status) {
        let api: Api<CassandraSink> = Api::namespaced(context.client.clone(), &namespace);
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
        .map_err(|source| ReconcileError::Kube {
            operation: format!("writing the status of {namespace}/{name}"),
            source,
        })?;
    }
    // Changes to the sink and its children wake the controller; progress and lag are read on a timer,
    // and a DDL that could not run is retried on it.
    if valid || retry_schema {
        Ok(Action::requeue(context.progress_interval))
    } else {
        Ok(Action::await_change())
    }
}

/// Progress from the committer's positions table and the topic's watermarks, or `None` when the
/// positions cannot be read now (logged at debug level; the workers' readiness already tells whether
/// Cassandra is reachable).
async fn read_progress(
    sink: &CassandraSink,
    context: &Context,
    secrets: &Secrets,
    watermarks: Option<&Watermarks>,
) -> Option<crate::crd::Progress> {
    let rows = match context.sessions.committer_session(secrets, sink).await {
        Ok(session) => committer::positions(&session, sink).await,
        Err(error) => Err(error),
    };
    match rows {
        Ok(rows) => Some(progress::summarize(&rows, watermarks)),
        Err(error) => {
            tracing::debug!(sink = %sink.name_any(), %error, "progress not read");
            None
        }
    }
}

/// Applies a `cassandra-sink.io/reset-positions` request once the sink is stopped and its workers
/// are gone; returns its outcome for the status (`None` when no reset is asked for).
async fn reset_positions(
    sink: &CassandraSink,
    context: &Context,
    secrets: &Secrets,
    watermarks: Option<&Watermarks>,
    workers_gone: bool,
) -> Option<PositionsReset> {
    let request = sink.annotations().get(reset::ANNOTATION)?.clone();
    let previous = sink
        .status
        .as_ref()
        .and_then(|status| status.positions_reset.clone())
        .filter(|previous| previous.request == request);
    if let Some(previous) = &previous
        && previous.phase != "Waiting"
    {
        return Some(previous.clone());
    }
    let outcome = |phase: &str, message: String| {
        // An unchanged wait keeps its time, so that waiting does not rewrite the status.
        if let Some(previous) = &previous
            && previous.phase == phase
            && previous.message == message
        {
            return previous.clone();
        }
        PositionsReset {
            request: request.clone(),
            phase: phase.to_owned(),
            message,
            time: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
        }
    };
    let parsed = match reset::parse(&request) {
        Ok(parsed) => parsed,
        Err(error) => return Some(outcome("Refused", error.to_string())),
    };
    if sink.spec.state != SinkState::Stopped || !workers_gone {
        return Some(outcome(
            "Waiting",
            "positions are reset only while the sink is stopped: set spec.state to stopped; the \
             reset is applied once its workers are gone"
                .to_owned(),
        ));
    }
    let Some(watermarks) = watermarks else {
        return Some(outcome(
            "Waiting",
            "the topic's offsets cannot be read from Kafka now; the operator retries".to_owned(),
        ));
    };
    let plan = match reset::plan(&parsed, watermarks) {
        Ok(plan) => plan,
        Err(error) => return Some(outcome("Refused", error.to_string())),
    };
    let applied = match context.sessions.committer_session(secrets, sink).await {
        Ok(session) => committer::reset(session, sink, &plan).await,
        Err(error) => Err(error),
    };
    if let Err(error) = applied {
        return Some(outcome(
            "Waiting",
            format!("the committer table cannot be written now ({error}); the operator retries"),
        ));
    }
    let moved = plan
        .iter()
        .map(|(partition, offset)| format!("{partition}→{offset}"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!("committed positions set (partition→next offset): {moved}");
    tracing::info!(sink = %sink.name_any(), %message, "positions reset");
    publish(
        context,
        sink,
        EventType::Normal,
        "PositionsReset",
        message.clone(),
    )
    .await;
    Some(outcome("Applied", message))
}

/// Publishes one Event about the sink; a failure to publish is only logged.
async fn publish(
    context: &Context,
    sink: &CassandraSink,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = context
        .recorder
        .publish(&event, &sink.object_ref(&()))
        .await
    {
        tracing::debug!(%error, "publishing an event failed");
    }
}

/// Publishes an Event for each condition whose status changed (Ready became True, Degraded became
/// True…), so `kubectl describe` and event collectors show the sink's history.
async fn publish_transitions(
    context: &Context,
    sink: &CassandraSink,
    status: &CassandraSinkStatus,
) {
    let before = sink
        .status
        .as_ref()
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    for condition in &status.conditions {
        let changed = !before
            .iter()
            .any(|old| old.type_ == condition.type_ && old.status == condition.status);
        if !changed {
            continue;
        }
        let warning = (condition.type_ == "Degraded" && condition.status == "True")
            || (condition.type_ == "Ready"
                && condition.status == "False"
                && condition.reason != "WorkersNotReady");
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let note = format!(
            "{}={}: {}",
            condition.type_, condition.status, condition.message
        );
        publish(context, sink, type_, &condition.reason, note).await;
    }
}

/// Checks that every referenced Secret exists with the keys the workers read; adds a problem for each
/// that does not. Returns what was seen: names and resource versions, which roll the workers when
/// they change, and which TLS Secrets carry a client certificate.
async fn check_secrets(
    secrets: &Secrets,
    sink: &CassandraSink,
    problems: &mut Vec<Problem>,
) -> Result<SecretsSeen, ReconcileError> {
    let namespace = secrets.namespace();
    let mut seen = SecretsSeen::default();
    for (field, name) in build::referenced_secrets(sink) {
        let tls = field.ends_with("tls.secretName");
        let needed: &[&str] = if tls {
            &["ca.crt"]
        } else {
            &["username", "password"]
        };
        match secrets.get_opt(&name).await? {
            None => problems.push(Problem {
                reason: "SecretMissing",
                message: format!(
                    "{field} names Secret {name:?}, which does not exist in namespace {namespace}; \
                     create it with keys {}",
                    needed.join(", ")
                ),
            }),
            Some(secret) => {
                let keys = secret.keys();
                let missing: Vec<&str> = needed
                    .iter()
                    .filter(|key| !keys.contains(key))
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    problems.push(Problem {
                        reason: "SecretKeyMissing",
                        message: format!(
                            "Secret {namespace}/{name} ({field}) has no key {}",
                            missing.join(", ")
                        ),
                    });
                }
                if tls && keys.contains(&"tls.crt") && keys.contains(&"tls.key") {
                    seen.client_certs.insert(name.clone());
                }
                seen.version
                    .push_str(&format!("{name}={};", secret.resource_version()));
            }
        }
    }
    Ok(seen)
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

/// Runs the controllers until their streams of reconciles end: one over all namespaces when
/// `namespaces` is empty, else one per listed namespace (each with its own watches, so the operator
/// needs no cluster-wide permission). The reconciles share sessions, Kafka clients and metrics.
pub async fn run(
    client: Client,
    settings: Settings,
    namespaces: Vec<String>,
    metrics: Arc<Metrics>,
    progress_interval: Duration,
    concurrency: u16,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.to_owned(),
            instance: std::env::var("HOSTNAME").ok(),
        },
    );
    let context = Arc::new(Context {
        client: client.clone(),
        settings,
        metrics,
        recorder,
        sessions: Sessions::default(),
        kafka: kafka::Clients::default(),
        progress_interval,
        concurrency,
    });
    if namespaces.is_empty() {
        run_one(client, None, context).await;
    } else {
        futures::future::join_all(
            namespaces
                .into_iter()
                .map(|namespace| run_one(client.clone(), Some(namespace), context.clone())),
        )
        .await;
    }
}

/// A hash of what the reconcile acts on, other than the status it writes itself.
fn acted_on(sink: &CassandraSink) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        sink.metadata.generation,
        sink.annotations(),
        sink.finalizers(),
        sink.metadata.deletion_timestamp.is_some(),
    )
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// One controller over one namespace, or all of them.
async fn run_one(client: Client, namespace: Option<String>, context: Arc<Context>) {
    fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let children =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=cassandra-sink-operator");
    // The operator's own status writes change a sink too; reconciling on each would double the work
    // at scale. A sink is reconciled when what the operator acts on changes: its spec (generation),
    // annotations (restart, reset), finalizers or deletion; and on its children's changes and timer.
    let (reader, writer) = reflector::store();
    let triggers = watcher(
        api::<CassandraSink>(&client, &namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    // managedFields are the bulk of a stored object and the operator never reads them.
    .modify(|sink| sink.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .predicate_filter(acted_on, PredicateConfig::default());
    let controller = Controller::for_stream(triggers, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(context.concurrency));
    let store = controller.store();
    controller
        .owns(api::<Deployment>(&client, &namespace), children.clone())
        .owns(api::<ConfigMap>(&client, &namespace), children.clone())
        .owns(api::<Service>(&client, &namespace), children)
        // A changed or created Secret wakes the sinks that reference it (rolls or un-degrades them).
        .watches(
            api::<Secret>(&client, &namespace),
            watcher::Config::default(),
            move |secret: Secret| {
                let namespace = secret.namespace().unwrap_or_default();
                let name = secret.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|sink| {
                        sink.namespace().as_deref() == Some(namespace.as_str())
                            && build::referenced_secrets(sink)
                                .iter()
                                .any(|(_, secret)| *secret == name)
                    })
                    .map(|sink| ObjectRef::from_obj(&*sink))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(sink = %object.name, "reconciled"),
                Err(error) => tracing::debug!(%error, "reconcile error"),
            }
        })
        .await;
}
