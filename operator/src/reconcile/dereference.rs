//! The reads a reconcile decides from, done first and once: the Secrets the spec references (do they
//! exist, with the keys the workers read; their versions, which roll the workers), and the topic's
//! watermarks (for lag and resets).

use kube::ResourceExt;

use crate::access::{AccessError, Secrets};
use crate::build::{self, SecretsSeen};
use crate::crd::CassandraSink;
use crate::kafka::{KafkaError, Watermarks};
use crate::reason::Reason;
use crate::validate::Problem;

use super::Context;

/// What the reads found.
#[derive(Debug, Default)]
pub struct Observed {
    /// The referenced Secrets as seen: versions and which carry a client certificate.
    pub secrets: SecretsSeen,
    /// A missing Secret or key, named with the spec field that references it.
    pub secret_problems: Vec<Problem>,
    /// Each partition's watermarks, or `None` when Kafka did not answer (lag is then unknown, not 0).
    pub watermarks: Option<Watermarks>,
    /// What Kafka refused for good, if it did: the credentials or the certificate, a property
    /// librdkafka does not take.
    pub kafka_problem: Option<Problem>,
    /// The brokers answered that the topic does not exist: what to tell the user.
    pub topic_missing: Option<String>,
}

/// Reads what the reconcile needs.
pub async fn observe(
    secrets: &Secrets,
    sink: &CassandraSink,
    context: &Context,
) -> Result<Observed, AccessError> {
    let (seen, secret_problems) = check_secrets(secrets, sink).await?;
    let mut kafka_problem = None;
    let mut topic_missing = None;
    let kafka = &sink.spec.source.kafka;
    let watermarks = if secret_problems.is_empty() && !kafka.bootstrap_servers.is_empty() {
        match context.kafka.watermarks(secrets, sink).await {
            Ok(watermarks) => Some(watermarks),
            Err(error) => {
                tracing::debug!(sink = %sink.name_any(), %error, "watermarks not read");
                if let KafkaError::TopicMissing { .. } = error {
                    let field = if kafka.topic.is_some() {
                        "topic"
                    } else {
                        "topics"
                    };
                    topic_missing = Some(format!(
                        "spec.source.kafka.{field}: {error}; the workers wait for it and start \
                         reading once it is created"
                    ));
                }
                kafka_problem = refused(&error);
                None
            }
        }
    } else {
        None
    };
    Ok(Observed {
        secrets: seen,
        secret_problems,
        watermarks,
        kafka_problem,
        topic_missing,
    })
}

/// The problem a Kafka error shows as on the sink, when asking again cannot help. A topic that does
/// not exist yet is not one: workers wait for it (the status says so without stalling, see
/// [`Observed::topic_missing`]).
fn refused(error: &KafkaError) -> Option<Problem> {
    match error {
        KafkaError::Access(_) => Some(Problem {
            reason: Reason::SecretUnreadable,
            message: format!("the operator cannot reach the sink's Kafka: {error}"),
        }),
        error if error.is_permanent() => Some(Problem {
            reason: Reason::KafkaRefused,
            message: format!(
                "spec.source.kafka: {error}; check the SASL credentials and TLS Secrets and the \
                 properties"
            ),
        }),
        _ => None,
    }
}

/// Checks that every referenced Secret exists with the keys the workers read.
async fn check_secrets(
    secrets: &Secrets,
    sink: &CassandraSink,
) -> Result<(SecretsSeen, Vec<Problem>), AccessError> {
    let namespace = secrets.namespace();
    let mut seen = SecretsSeen::default();
    let mut problems = Vec::new();
    for (field, name) in build::referenced_secrets(sink) {
        let tls = field.ends_with("tls.secretName");
        let needed: &[&str] = if tls {
            &["ca.crt"]
        } else {
            &["username", "password"]
        };
        match secrets.get_opt(&name).await? {
            None => problems.push(Problem {
                reason: Reason::SecretMissing,
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
                        reason: Reason::SecretKeyMissing,
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
    Ok((seen, problems))
}
