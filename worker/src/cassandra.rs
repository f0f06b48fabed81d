//! Connecting to Cassandra from a [`CassandraConfig`], and telling a request that may succeed when
//! retried from one that never will.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency as DriverConsistency;

use crate::config::{CassandraConfig, Consistency, SecretSource, TlsConfig};

/// Errors while connecting.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A credential file or variable could not be read.
    #[error("cannot read the Cassandra {what} from {source_name}: {reason}")]
    Secret {
        /// `username` or `password`.
        what: &'static str,
        /// The file or variable (never its value).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A TLS file is missing or malformed.
    #[error("Cassandra TLS: {0}")]
    Tls(String),
    /// No node answered, or authentication failed.
    #[error("cannot connect to Cassandra at {contact_points}: {message}")]
    Connect {
        /// The configured contact points.
        contact_points: String,
        /// The driver's message.
        message: String,
    },
}

/// Reads a secret value from its file or environment variable; a trailing newline is removed.
pub fn read_secret(what: &'static str, source: &SecretSource) -> Result<String, ConnectError> {
    let (source_name, value) = match source {
        SecretSource::File(path) => (
            format!("file {}", path.display()),
            std::fs::read_to_string(path).map_err(|error| error.to_string()),
        ),
        SecretSource::Env(name) => (
            format!("environment variable {name}"),
            std::env::var(name).map_err(|error| error.to_string()),
        ),
    };
    value
        .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|reason| ConnectError::Secret {
            what,
            source_name,
            reason,
        })
}

/// The driver's consistency level for a configured one.
pub fn driver_consistency(consistency: Consistency) -> DriverConsistency {
    match consistency {
        Consistency::One => DriverConsistency::One,
        Consistency::Two => DriverConsistency::Two,
        Consistency::Three => DriverConsistency::Three,
        Consistency::Quorum => DriverConsistency::Quorum,
        Consistency::LocalQuorum => DriverConsistency::LocalQuorum,
        Consistency::EachQuorum => DriverConsistency::EachQuorum,
        Consistency::LocalOne => DriverConsistency::LocalOne,
        Consistency::All => DriverConsistency::All,
    }
}

/// Opens a session: token-aware routing, preferring the local datacenter when one is configured.
pub async fn connect(config: &CassandraConfig) -> Result<Session, ConnectError> {
    let credentials = match &config.credentials {
        Some(credentials) => Some((
            read_secret("username", &credentials.username)?,
            read_secret("password", &credentials.password)?,
        )),
        None => None,
    };
    connect_with(config, credentials).await
}

/// Like [`connect`], with the username and password already in hand (the operator reads them from a
/// Secret through the API rather than from files).
pub async fn connect_with(
    config: &CassandraConfig,
    credentials: Option<(String, String)>,
) -> Result<Session, ConnectError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(datacenter) = &config.local_datacenter {
        policy = policy
            .prefer_datacenter(datacenter.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(policy.build())
        .consistency(driver_consistency(config.consistency))
        .request_timeout(Some(config.request_timeout.0))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .default_execution_profile_handle(profile.into_handle())
        .connection_timeout(Duration::from_secs(10));
    if let Some((username, password)) = credentials {
        builder = builder.user(username, password);
    }
    if let Some(tls) = &config.tls {
        builder = builder.tls_context(Some(Arc::new(tls_config(tls)?)));
    }
    builder
        .build()
        .await
        .map_err(|error| ConnectError::Connect {
            contact_points: config.contact_points.join(","),
            message: error.to_string(),
        })
}

fn tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, ConnectError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca_file {
        for cert in CertificateDer::pem_file_iter(ca)
            .map_err(|error| ConnectError::Tls(format!("CA file {}: {error}", ca.display())))?
        {
            let cert = cert
                .map_err(|error| ConnectError::Tls(format!("CA file {}: {error}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|error| ConnectError::Tls(format!("CA file {}: {error}", ca.display())))?;
        }
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|error| ConnectError::Tls(format!("no usable CA certificate: {error}")))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ConnectError::Tls(error.to_string()))?;
    let builder = if tls.verify_hostname {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    ConnectError::Tls(format!("certificate {}: {error}", cert.display()))
                })?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|error| ConnectError::Tls(format!("key {}: {error}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|error| ConnectError::Tls(error.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(ConnectError::Tls(
            "certFile and keyFile go together for mutual TLS".to_owned(),
        )),
    }
}

/// Verifies the chain against the CA but accepts any host name (`verifyHostname: false`), for
/// clusters whose certificates do not name the addresses clients use.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What to do about a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Cassandra is unavailable, overloaded or slow: retry with backoff.
    Transient(String),
    /// Cassandra refused this request's values (too large a key, an invalid value): retrying cannot
    /// help; the record is invalid.
    Rejected(String),
}

/// Sorts a failed write into [`Failure::Transient`] or [`Failure::Rejected`].
pub fn classify(error: &ExecutionError) -> Failure {
    match error {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid | DbError::TruncateError,
            message,
        )) => Failure::Rejected(message.clone()),
        ExecutionError::BadQuery(_) => Failure::Rejected(error.to_string()),
        _ => Failure::Transient(error.to_string()),
    }
}
