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
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::{self, Settings};
use crate::committer::{self, Sessions};
use crate::crd::{CassandraSink, CassandraSinkStatus, DeletionPolicy, SinkState};
use crate::metrics::Metrics;
use crate::status::{self, Workers};
use crate::validate::{Problem, validate};

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
    /// Sessions on committer tables, for progress and clean-up.
    pub sessions: Sessions,
    /// How often a running sink's progress is read from its committer table.
    pub progress_interval: Duration,
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
        let session = context
            .sessions
            .committer_session(&context.client, sink)
            .await?;
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
    let previous = sink
        .status
        .as_ref()
        .map(|status| status.conditions.clone())
        .unwrap_or_default();

    let mut problems = validate(&sink.spec);
    let running = sink.spec.state == SinkState::Running;
    let secrets_version = check_secrets(&context.client, sink, &namespace, &mut problems).await?;
    let problems_empty = problems.is_empty();
    let (desired, replicas) = if problems_empty {
        let children = build::children(sink, &context.settings, &secrets_version)?;
        apply(&context.client, &namespace, &children.config_map).await?;
        apply(&context.client, &namespace, &children.service).await?;
        let deployment = apply(&context.client, &namespace, &children.deployment).await?;
        let observed = deployment.status.clone().unwrap_or_default();
        let workers = Workers {
            wanted: build::replicas(sink),
            ready: observed.ready_replicas.unwrap_or(0),
            updated: observed.updated_replicas.unwrap_or(0),
            observed: observed.observed_generation >= deployment.metadata.generation,
        };
        let desired = match sink.spec.state {
            SinkState::Running => status::running(workers),
            state => status::halted(state, workers),
        };
        (desired, workers.ready)
    } else {
        tracing::info!(sink = %name, namespace = %namespace, problems = ?problems, "invalid spec");
        (status::invalid(&problems), 0)
    };

    let status = CassandraSinkStatus {
        observed_generation: sink.metadata.generation,
        conditions: status::conditions(
            &previous,
            desired,
            sink.metadata.generation,
            Time(k8s_openapi::jiff::Timestamp::now()),
        ),
        replicas,
        selector: Some(build::selector_string(&name)),
        progress: if running && problems_empty {
            read_progress(sink, context).await
        } else {
            None
        }
        .or_else(|| {
            sink.status
                .as_ref()
                .and_then(|status| status.progress.clone())
        }),
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
    // Changes to the sink and its children wake the controller; only progress is read on a timer.
    if running && problems_empty {
        Ok(Action::requeue(context.progress_interval))
    } else {
        Ok(Action::await_change())
    }
}

/// Progress from the committer table, or `None` when it cannot be read now (logged at debug level; the
/// workers' readiness already tells whether Cassandra is reachable).
async fn read_progress(sink: &CassandraSink, context: &Context) -> Option<crate::crd::Progress> {
    let session = match context
        .sessions
        .committer_session(&context.client, sink)
        .await
    {
        Ok(session) => session,
        Err(error) => {
            tracing::debug!(sink = %sink.name_any(), %error, "progress not read");
            return None;
        }
    };
    match committer::progress(&session, sink).await {
        Ok(progress) => Some(progress),
        Err(error) => {
            tracing::debug!(sink = %sink.name_any(), %error, "progress not read");
            None
        }
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
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: condition.reason.clone(),
            note: Some(format!(
                "{}={}: {}",
                condition.type_, condition.status, condition.message
            )),
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
}

/// Checks that every referenced Secret exists with the keys the workers read; adds a problem for each
/// that does not. Returns their names and resource versions, which roll the workers when they change.
async fn check_secrets(
    client: &Client,
    sink: &CassandraSink,
    namespace: &str,
    problems: &mut Vec<Problem>,
) -> Result<String, ReconcileError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut version = String::new();
    for (field, name) in build::referenced_secrets(sink) {
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|source| ReconcileError::Kube {
                operation: format!("reading Secret {namespace}/{name}"),
                source,
            })?;
        let needed: &[&str] = if field.ends_with("tls.secretName") {
            &["ca.crt"]
        } else {
            &["username", "password"]
        };
        match secret {
            None => problems.push(Problem {
                reason: "SecretMissing",
                message: format!(
                    "{field} names Secret {name:?}, which does not exist in namespace {namespace}; \
                     create it with keys {}",
                    needed.join(", ")
                ),
            }),
            Some(secret) => {
                let keys: Vec<&String> = secret
                    .data
                    .iter()
                    .flat_map(|data| data.keys())
                    .chain(secret.string_data.iter().flat_map(|data| data.keys()))
                    .collect();
                let missing: Vec<&str> = needed
                    .iter()
                    .filter(|key| !keys.iter().any(|have| have.as_str() == **key))
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
                version.push_str(&format!(
                    "{name}={};",
                    secret.metadata.resource_version.unwrap_or_default()
                ));
            }
        }
    }
    Ok(version)
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

/// Runs the controller until the stream of reconciles ends. `namespace` limits it to one namespace.
pub async fn run(
    client: Client,
    settings: Settings,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    progress_interval: Duration,
) {
    let (sinks, deployments, config_maps, services) = match &namespace {
        Some(namespace) => (
            Api::<CassandraSink>::namespaced(client.clone(), namespace),
            Api::<Deployment>::namespaced(client.clone(), namespace),
            Api::<ConfigMap>::namespaced(client.clone(), namespace),
            Api::<Service>::namespaced(client.clone(), namespace),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let secrets = match &namespace {
        Some(namespace) => Api::<Secret>::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let children =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=cassandra-sink-operator");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.to_owned(),
            instance: std::env::var("HOSTNAME").ok(),
        },
    );
    let context = Arc::new(Context {
        client,
        settings,
        metrics,
        recorder,
        sessions: Sessions::default(),
        progress_interval,
    });
    let controller = Controller::new(sinks, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(deployments, children.clone())
        .owns(config_maps, children.clone())
        .owns(services, children)
        // A changed or created Secret wakes the sinks that reference it (rolls or un-degrades them).
        .watches(
            secrets,
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
