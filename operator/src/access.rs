//! Credentials and TLS material the operator itself needs to reach a sink's Cassandra and Kafka (for
//! the DDL, progress, lag, resets and clean-up), read from the sink's Secrets through the API. The
//! workers get the same Secrets mounted as files; the operator never writes their content anywhere.

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

/// A Secret read through the API, with its resource version (part of every cache key, so a rotated
/// password or certificate opens a new connection).
pub struct SecretData {
    namespace: String,
    name: String,
    secret: Secret,
}

impl SecretData {
    /// Reads a Secret.
    pub async fn read(client: &Client, namespace: &str, name: &str) -> Result<Self, AccessError> {
        let secret = Api::<Secret>::namespaced(client.clone(), namespace)
            .get(name)
            .await
            .map_err(|error| AccessError {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                message: error.to_string(),
            })?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            secret,
        })
    }

    /// The Secret's resource version.
    pub fn version(&self) -> String {
        format!(
            "{}@{}",
            self.name,
            self.secret
                .metadata
                .resource_version
                .clone()
                .unwrap_or_default()
        )
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
    client: &Client,
    namespace: &str,
    connection: &CassandraConnection,
) -> Result<(Access, String), AccessError> {
    let mut access = Access::default();
    let mut version = String::new();
    if let Some(name) = &connection.credentials_secret {
        let secret = SecretData::read(client, namespace, name).await?;
        access.credentials = Some((secret.text("username")?, secret.text("password")?));
        version.push_str(&secret.version());
    }
    if let Some(tls) = &connection.tls {
        let secret = SecretData::read(client, namespace, &tls.secret_name).await?;
        access.tls = Some(secret.tls(tls));
        version.push('|');
        version.push_str(&secret.version());
    }
    Ok((access, version))
}
