//! The controllers: which watches wake which sink, and how many reconciles run at once. The reconcile
//! itself is [`crate::reconcile`].

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::{PredicateConfig, WatchStreamExt};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::build::{self, Settings};
use crate::committer::Sessions;
use crate::crd::CassandraSink;
use crate::in_use::{self, Gone};
use crate::kafka;
use crate::metrics::Metrics;
use crate::reconcile::{Context, MANAGER, error_policy, reconcile};

pub use crate::reconcile::finalizer::FINALIZER;

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
        sessions: Sessions::new(metrics.cassandra_sessions.clone()),
        kafka: kafka::Clients::new(metrics.kafka_clients.clone()),
        metrics,
        recorder,
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

/// Closes the sessions and Kafka clients only deleted sinks used: on a sink's deletion, and when the
/// watch lists the sinks again (a deletion may have gone unseen while it was not watching). Sinks
/// without a finalizer are never reconciled once deleted, so the watch is where their end is seen.
fn release_connections(
    context: &Arc<Context>,
    event: &watcher::Event<CassandraSink>,
    namespace: Option<&str>,
    live: &Store<CassandraSink>,
) {
    let gone = match event {
        watcher::Event::Delete(sink) => Gone::One(in_use::user(sink)),
        watcher::Event::InitDone => Gone::AllBut {
            namespace: namespace.map(str::to_owned),
            live: live.state().iter().map(|sink| in_use::user(sink)).collect(),
        },
        _ => return,
    };
    let context = context.clone();
    tokio::spawn(async move {
        context.sessions.release(&gone).await;
        context.kafka.release(&gone).await;
    });
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
    let release = {
        let (context, live, namespace) = (context.clone(), reader.clone(), namespace.clone());
        move |event: &watcher::Event<CassandraSink>| {
            release_connections(&context, event, namespace.as_deref(), &live)
        }
    };
    let triggers = watcher(
        api::<CassandraSink>(&client, &namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    // managedFields are the bulk of a stored object and the operator never reads them.
    .modify(|sink| sink.managed_fields_mut().clear())
    .reflect(writer)
    .inspect_ok(release)
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
