//! Credentials and TLS material the operator itself needs to reach a sink's Cassandra and Kafka (for
//! the DDL, progress, lag, resets and clean-up), read from the sink's Secrets through the API. The
//! workers get the same Secrets mounted as files; the operator never writes their content anywhere.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use cassandra_sink_worker::cassandra::{Access, Pem, TlsMaterial};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::crd::{CassandraConnection, SecretTls};

/// A Secret the operator needed could not be read.
#[derive(Debug, thiserror::Error)]
#[error("Secret {namespace}/{name}: {message}")]
pub struct AccessError {
    /// The Secret's namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// What failed.
    pub message: String,
}

/// The Secrets of one sink's namespace as one reconcile sees them: each read through the API at most
/// once, however many checks and connections need it.
pub struct Secrets {
    client: Client,
    namespace: String,
    read: Mutex<BTreeMap<String, Option<Arc<SecretData>>>>,
}

impl Secrets {
    /// Nothing read yet.
    pub fn new(client: &Client, namespace: &str) -> Self {
        Self {
            client: client.clone(),
            namespace: namespace.to_owned(),
            read: Mutex::new(BTreeMap::new()),
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A Secret, or `None` when it does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<Arc<SecretData>>, AccessError> {
        if let Some(read) = self.lock().get(name) {
            return Ok(read.clone());
        }
        let secret = Api::<Secret>::namespaced(self.client.clone(), &self.namespace)
            .get_opt(name)
            .await
            .map_err(|error| AccessError {
                namespace: self.namespace.clone(),
                name: name.to_owned(),
                message: error.to_string(),
            })?
            .map(|secret| {
                Arc::new(SecretData {
                    namespace: self.namespace.clone(),
                    name: name.to_owned(),
                    secret,
                })
            });
        self.lock().insert(name.to_owned(), secret.clone());
        Ok(secret)
    }

    /// A Secret that must exist.
    pub async fn get(&self, name: &str) -> Result<Arc<SecretData>, AccessError> {
        self.get_opt(name).await?.ok_or_else(|| AccessError {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            message: "not found".to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<Arc<SecretData>>>> {
        self.read
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A Secret read through the API, with its resource version (part of every cache key, so a rotated
/// password or certificate opens a new connection).
pub struct SecretData {
    namespace: String,
    name: String,
    secret: Secret,
}

impl SecretData {
    /// The keys it holds.
    pub fn keys(&self) -> Vec<&str> {
        self.secret
            .data
            .iter()
            .flat_map(|data| data.keys())
            .chain(self.secret.string_data.iter().flat_map(|data| data.keys()))
            .map(String::as_str)
            .collect()
    }

    /// The Secret's resource version, bare.
    pub fn resource_version(&self) -> &str {
        self.secret
            .metadata
            .resource_version
            .as_deref()
            .unwrap_or_default()
    }

    /// The Secret's resource version.
    pub fn version(&self) -> String {
        format!("{}@{}", self.name, self.resource_version())
    }

    fn bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| bytes.0.clone())
    }

    /// A key's value, which must be present.
    pub fn required(&self, key: &str) -> Result<Vec<u8>, AccessError> {
        self.bytes(key).ok_or_else(|| AccessError {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            message: format!("no key {key}"),
        })
    }

    /// A key's value as text, trailing newline removed.
    pub fn text(&self, key: &str) -> Result<String, AccessError> {
        String::from_utf8(self.required(key)?)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|error| AccessError {
                namespace: self.namespace.clone(),
                name: self.name.clone(),
                message: format!("key {key}: {error}"),
            })
    }

    fn pem(&self, key: &str) -> Option<Pem> {
        self.bytes(key).map(|bytes| Pem {
            origin: format!("Secret {}/{} key {key}", self.namespace, self.name),
            bytes,
        })
    }

    /// `ca.crt`, and `tls.crt`/`tls.key` when present, as TLS material.
    pub fn tls(&self, settings: &SecretTls) -> TlsMaterial {
        TlsMaterial {
            ca: self.pem("ca.crt"),
            cert: self.pem("tls.crt"),
            key: self.pem("tls.key"),
            verify_hostname: settings.verify_hostname,
        }
    }
}

/// Credentials and TLS for a Cassandra connection, and a version string that changes when either
/// Secret does.
pub async fn cassandra(
    secrets: &Secrets,
    connection: &CassandraConnection,
) -> Result<(Access, String), AccessError> {
    let mut access = Access::default();
    let mut version = String::new();
    if let Some(name) = &connection.credentials_secret {
        let secret = secrets.get(name).await?;
        access.credentials = Some((secret.text("username")?, secret.text("password")?));
        version.push_str(&secret.version());
    }
    if let Some(tls) = &connection.tls {
        let secret = secrets.get(&tls.secret_name).await?;
        access.tls = Some(secret.tls(tls));
        version.push('|');
        version.push_str(&secret.version());
    }
    Ok((access, version))
}
