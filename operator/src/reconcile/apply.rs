//! The children applied with server-side apply under one field manager, owned by the sink (so the
//! controller is woken by any change to them, an edited Deployment is put back, and Kubernetes
//! garbage collection removes them with the sink), and what the Deployment and its pods then report.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::Children;
use crate::status::Workers;

use super::MANAGER;

/// The API server refused or failed a request.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {source}")]
pub struct ApplyError {
    /// What was attempted.
    pub operation: String,
    /// The client error.
    pub source: kube::Error,
}

/// What applying found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The workers as the Deployment reports them.
    pub workers: Workers,
    /// A worker that stopped on a failure a restart cannot cure: its pod, reason and message.
    pub failure: Option<String>,
}

async fn apply<K>(client: &Client, object: &K) -> Result<K, ApplyError>
where
    K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|source| ApplyError {
        operation: format!("applying {} {namespace}/{name}", K::kind(&())),
        source,
    })
}

/// Applies the children; reports the workers, and why one keeps failing when some are not ready.
pub async fn children(client: &Client, children: &Children) -> Result<Applied, ApplyError> {
    apply(client, &children.config_map).await?;
    apply(client, &children.service).await?;
    let deployment = apply(client, &children.deployment).await?;
    let observed = deployment.status.clone().unwrap_or_default();
    let workers = Workers {
        wanted: deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(0),
        ready: observed.ready_replicas.unwrap_or(0),
        updated: observed.updated_replicas.unwrap_or(0),
        existing: observed.replicas.unwrap_or(0),
        observed: observed.observed_generation >= deployment.metadata.generation,
    };
    let failure = if workers.ready < workers.wanted {
        let namespace = deployment.namespace().unwrap_or_default();
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        worker_failure(client, &namespace, &selector).await?
    } else {
        None
    };
    Ok(Applied { workers, failure })
}

/// The worker exit reasons a restart cannot cure: what the worker writes as `reason=…` into its
/// termination message (`cassandra-sink-worker run`).
const FINAL_WORKER_REASONS: &[&str] = &[
    "InvalidStatement",
    "NotExactlyOnce",
    "InvalidMapping",
    "SchemaFailed",
    "Unauthorized",
    "TlsFailed",
    "CredentialsUnreadable",
    "RangeGone",
    "InvalidRecord",
    "CommitterFailed",
    "DeadLetterFailed",
    "KafkaFailed",
    "ListenFailed",
    "InvalidFormat",
    "SchemaRegistryRefused",
];

/// The most recent termination of a worker pod that says it cannot go on, as
/// `pod <name>: reason=…: message`.
async fn worker_failure(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> Result<Option<String>, ApplyError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let listed = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|source| ApplyError {
            operation: format!("listing the worker pods in {namespace}"),
            source,
        })?;
    Ok(listed.items.iter().find_map(|pod| {
        let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
        statuses.iter().find_map(|container| {
            let terminated = container
                .last_state
                .as_ref()
                .and_then(|state| state.terminated.as_ref())
                .or_else(|| container.state.as_ref()?.terminated.as_ref())?;
            let message = terminated.message.as_deref()?.trim();
            final_reason(message).map(|_| format!("worker pod {}: {message}", pod.name_any()))
        })
    }))
}

/// The reason of a termination message `reason=X: …` when X is final.
pub fn final_reason(message: &str) -> Option<&str> {
    let reason = message.strip_prefix("reason=")?.split(':').next()?;
    FINAL_WORKER_REASONS.contains(&reason).then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_reasons_stall_a_sink() {
        assert_eq!(
            final_reason("reason=RangeGone: partition 0 starts at 40"),
            Some("RangeGone")
        );
        assert_eq!(final_reason("reason=CassandraUnreachable: no answer"), None);
        assert_eq!(final_reason("panicked at src/main.rs"), None);
    }

    #[test]
    fn the_workers_own_reasons_are_the_ones_read_here() {
        // Each is a reason the worker reports (worker/src/startup.rs), spelt the same.
        let source = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/src/startup.rs"),
        )
        .expect("worker/src/startup.rs");
        let main = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/src/main.rs"),
        )
        .expect("worker/src/main.rs");
        for reason in FINAL_WORKER_REASONS {
            assert!(
                source.contains(&format!("\"{reason}\""))
                    || main.contains(&format!("\"{reason}\"")),
                "{reason} is not a reason the worker reports"
            );
        }
    }
}
