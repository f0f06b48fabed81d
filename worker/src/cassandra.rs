//! Connecting to Cassandra from a [`CassandraConfig`], and telling a request that may succeed when
//! retried from one that never will.

use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{
    ConnectionError, ConnectionPoolError, ConnectionSetupRequestErrorKind, DbError, ExecutionError,
    MetadataError, NewSessionError, PrepareError, RequestAttemptError,
};
use scylla::policies::load_balancing::{DefaultPolicy, LoadBalancingPolicy};
use scylla::statement::{
    Consistency as DriverConsistency, SerialConsistency as DriverSerialConsistency,
};

use crate::config::{CassandraConfig, Consistency, SecretSource, SerialConsistency, TlsConfig};

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
    /// No node answered, or a node refused the credentials or the TLS handshake.
    #[error("cannot connect to Cassandra at {contact_points}: {source}")]
    Connect {
        /// The configured contact points.
        contact_points: String,
        /// The driver's error.
        source: Box<NewSessionError>,
    },
}

impl ConnectError {
    /// True when connecting again cannot help until a person changes something: a credential or TLS
    /// file that cannot be read, credentials Cassandra refuses, a certificate it does not trust or
    /// that does not trust it. An unreachable or starting cluster is transient.
    pub fn is_permanent(&self) -> bool {
        match self {
            ConnectError::Secret { .. } | ConnectError::Tls(_) => true,
            ConnectError::Connect { source, .. } => match source.as_ref() {
                NewSessionError::EmptyKnownNodesList | NewSessionError::IllegalConfig(_) => true,
                error => last_connection_error(error)
                    .is_some_and(|error| refused_credentials(error) || refused_certificate(error)),
            },
        }
    }

    /// True when Cassandra refused the credentials (as opposed to a TLS or reachability failure).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            ConnectError::Connect { source, .. } => {
                last_connection_error(source).is_some_and(refused_credentials)
            }
            _ => false,
        }
    }
}

/// The error of the last connection the driver tried, when that is why the session failed.
fn last_connection_error(error: &NewSessionError) -> Option<&ConnectionError> {
    match error {
        NewSessionError::MetadataError(MetadataError::ConnectionPoolError(
            ConnectionPoolError::Broken {
                last_connection_error,
            },
        )) => Some(last_connection_error),
        _ => None,
    }
}

fn refused_credentials(error: &ConnectionError) -> bool {
    matches!(
        error,
        ConnectionError::ConnectionSetupRequestError(setup) if matches!(
            setup.error,
            ConnectionSetupRequestErrorKind::DbError(
                DbError::AuthenticationError | DbError::Unauthorized,
                _
            ) | ConnectionSetupRequestErrorKind::MissingAuthentication
        )
    )
}

/// A TLS handshake that failed on a certificate (rustls' error inside the I/O error).
fn refused_certificate(error: &ConnectionError) -> bool {
    match error {
        ConnectionError::IoError(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
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

/// The driver's serial consistency for a configured one.
pub fn driver_serial(serial: SerialConsistency) -> DriverSerialConsistency {
    match serial {
        SerialConsistency::LocalSerial => DriverSerialConsistency::LocalSerial,
        SerialConsistency::Serial => DriverSerialConsistency::Serial,
    }
}

/// One PEM document and where it came from (for error messages; never its content).
#[derive(Debug, Clone)]
pub struct Pem {
    /// `file /etc/…/ca.crt` or `Secret ns/name key ca.crt`.
    pub origin: String,
    /// The PEM text.
    pub bytes: Vec<u8>,
}

/// TLS material already read: from files by the worker, from Secrets through the API by the operator.
#[derive(Debug, Clone, Default)]
pub struct TlsMaterial {
    /// CA bundle that signs the server certificates.
    pub ca: Option<Pem>,
    /// Client certificate chain, for mutual TLS.
    pub cert: Option<Pem>,
    /// Client private key, for mutual TLS.
    pub key: Option<Pem>,
    /// Check that the server certificate names the host connected to.
    pub verify_hostname: bool,
}

impl TlsMaterial {
    /// Reads the files a [`TlsConfig`] names.
    pub fn from_files(tls: &TlsConfig) -> Result<Self, ConnectError> {
        let read = |path: &Option<std::path::PathBuf>| -> Result<Option<Pem>, ConnectError> {
            path.as_ref()
                .map(|path| {
                    let origin = format!("file {}", path.display());
                    std::fs::read(path)
                        .map(|bytes| Pem {
                            origin: origin.clone(),
                            bytes,
                        })
                        .map_err(|error| ConnectError::Tls(format!("{origin}: {error}")))
                })
                .transpose()
        };
        Ok(Self {
            ca: read(&tls.ca_file)?,
            cert: read(&tls.cert_file)?,
            key: read(&tls.key_file)?,
            verify_hostname: tls.verify_hostname,
        })
    }
}

/// What a connection needs besides addresses, already read: credentials and TLS material.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Username and password for PasswordAuthenticator.
    pub credentials: Option<(String, String)>,
    /// TLS; plain TCP when absent.
    pub tls: Option<TlsMaterial>,
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
    let tls = config
        .tls
        .as_ref()
        .map(TlsMaterial::from_files)
        .transpose()?;
    connect_with(config, Access { credentials, tls }).await
}

/// Like [`connect`], with credentials and TLS material already in hand (the operator reads them from
/// Secrets through the API rather than from files); `config.credentials` and `config.tls` are ignored.
pub async fn connect_with(
    config: &CassandraConfig,
    access: Access,
) -> Result<Session, ConnectError> {
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(load_balancing_policy(config))
        .consistency(driver_consistency(config.consistency))
        .request_timeout(Some(config.request_timeout.0))
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .default_execution_profile_handle(profile.into_handle())
        .connection_timeout(Duration::from_secs(10));
    if let Some((username, password)) = access.credentials {
        builder = builder.user(username, password);
    }
    if let Some(tls) = &access.tls {
        builder = builder.tls_context(Some(Arc::new(tls_config(tls)?)));
    }
    builder
        .build()
        .await
        .map_err(|error| ConnectError::Connect {
            contact_points: config.contact_points.join(","),
            source: Box::new(error),
        })
}

/// Token-aware routing, confined to the local datacenter when one is configured. Until the keyspaces a
/// session writes are known, confinement is strict ([`settle_datacenter_routing`] may relax it).
pub fn load_balancing_policy(config: &CassandraConfig) -> Arc<dyn LoadBalancingPolicy> {
    policy(config, false)
}

fn policy(config: &CassandraConfig, permit_failover: bool) -> Arc<dyn LoadBalancingPolicy> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(datacenter) = &config.local_datacenter {
        policy = policy
            .prefer_datacenter(datacenter.clone())
            .permit_dc_failover(permit_failover);
    }
    policy.build()
}

/// How a session's routing treats the datacenters, given the keyspaces it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatacenterRouting {
    /// Whether a request may go to a node outside the local datacenter when the plan has none in it.
    pub permit_failover: bool,
    /// What the user should know, said once at start.
    pub warning: Option<String>,
}

/// Decides [`DatacenterRouting`]. `keyspaces` pairs each keyspace with whether its replication places
/// replicas per datacenter (`NetworkTopologyStrategy`); `datacenters` are those of the cluster's nodes.
///
/// A keyspace under `SimpleStrategy` places replicas around the ring without regard to datacenters.
/// Confined strictly to the local datacenter, some of its tokens would have no replica to go to:
/// requests fail, and the driver warns on every request that it may happen (it cannot know the
/// cluster's topology). So strict confinement is kept only when every keyspace is placed per
/// datacenter; otherwise the local datacenter is preferred with failover permitted, which changes
/// nothing on a one-datacenter cluster, and on several is what such a keyspace needs, said once.
pub fn datacenter_routing(
    local: Option<&str>,
    keyspaces: &[(String, bool)],
    datacenters: &std::collections::BTreeSet<String>,
) -> DatacenterRouting {
    let blind: Vec<&str> = keyspaces
        .iter()
        .filter(|(_, per_datacenter)| !per_datacenter)
        .map(|(name, _)| name.as_str())
        .collect();
    let Some(local) = local else {
        return DatacenterRouting {
            permit_failover: true,
            warning: None,
        };
    };
    if blind.is_empty() {
        return DatacenterRouting {
            permit_failover: false,
            warning: None,
        };
    }
    let elsewhere: Vec<&str> = datacenters
        .iter()
        .map(String::as_str)
        .filter(|datacenter| *datacenter != local)
        .collect();
    DatacenterRouting {
        permit_failover: true,
        warning: (!elsewhere.is_empty()).then(|| {
            format!(
                "keyspace {} does not place replicas per datacenter (SimpleStrategy), and the cluster \
                 has nodes outside localDatacenter {local} (in {}): writes of some keys go to those \
                 nodes. Use NetworkTopologyStrategy to keep them in {local}",
                blind.join(", "),
                elsewhere.join(", ")
            )
        }),
    }
}

/// Settles the session's datacenter routing from the keyspaces it writes ([`datacenter_routing`]),
/// as the session's schema metadata has them (refresh it first if they may be new). Returns the
/// policy now in force, for requests routed by hand, and what to tell the user once.
pub fn settle_datacenter_routing(
    session: &Session,
    config: &CassandraConfig,
    keyspaces: &[&str],
) -> (Arc<dyn LoadBalancingPolicy>, Option<String>) {
    let state = session.get_cluster_state();
    let mut named: Vec<(String, bool)> = Vec::new();
    for keyspace in keyspaces {
        if named.iter().any(|(name, _)| name == keyspace) {
            continue;
        }
        let per_datacenter = state.get_keyspace(keyspace).is_some_and(|found| {
            matches!(
                found.strategy,
                scylla::cluster::metadata::Strategy::NetworkTopologyStrategy { .. }
            )
        });
        named.push(((*keyspace).to_owned(), per_datacenter));
    }
    let datacenters = state
        .get_nodes_info()
        .iter()
        .filter_map(|node| node.datacenter.clone())
        .collect();
    let routing = datacenter_routing(config.local_datacenter.as_deref(), &named, &datacenters);
    (
        route_by(session, config, routing.permit_failover),
        routing.warning,
    )
}

/// Makes the session prefer the local datacenter with failover permitted, whatever its keyspaces: for
/// the operator, whose few requests (DDL, PREPARE, committer reads) should reach the cluster wherever
/// the replicas are.
pub fn permit_datacenter_failover(session: &Session, config: &CassandraConfig) {
    route_by(session, config, true);
}

/// Points the session's default profile at the policy with `permit_failover`, and returns the policy.
fn route_by(
    session: &Session,
    config: &CassandraConfig,
    permit_failover: bool,
) -> Arc<dyn LoadBalancingPolicy> {
    let chosen = policy(config, permit_failover);
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(chosen.clone())
        .consistency(driver_consistency(config.consistency))
        .request_timeout(Some(config.request_timeout.0))
        .build();
    // The handle is shared: every statement on the default profile follows.
    session
        .get_default_execution_profile_handle()
        .clone()
        .map_to_another_profile(profile);
    chosen
}

/// A rustls client configuration from PEM material.
pub fn tls_config(tls: &TlsMaterial) -> Result<rustls::ClientConfig, ConnectError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca {
        let error =
            |error: &dyn std::fmt::Display| ConnectError::Tls(format!("CA {}: {error}", ca.origin));
        for cert in CertificateDer::pem_slice_iter(&ca.bytes) {
            roots
                .add(cert.map_err(|e| error(&e))?)
                .map_err(|e| error(&e))?;
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
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(&cert.bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| {
                    ConnectError::Tls(format!("certificate {}: {error}", cert.origin))
                })?;
            let private = PrivateKeyDer::from_pem_slice(&key.bytes)
                .map_err(|error| ConnectError::Tls(format!("key {}: {error}", key.origin)))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|error| ConnectError::Tls(error.to_string()))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(ConnectError::Tls(
            "a client certificate and key go together for mutual TLS".to_owned(),
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

/// The error Cassandra answered a request with, if it answered (rather than timing out or being
/// out of reach).
pub fn db_error(error: &ExecutionError) -> Option<&DbError> {
    match error {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => Some(db),
        _ => None,
    }
}

/// The error Cassandra answered a PREPARE with, if it answered.
pub fn prepare_db_error(error: &PrepareError) -> Option<&DbError> {
    match error {
        PrepareError::AllAttemptsFailed {
            first_attempt: RequestAttemptError::DbError(db, _),
        } => Some(db),
        _ => None,
    }
}

/// True for an answer that the same request will always get: the statement is wrong, names what
/// does not exist, or is not permitted. Timeouts, unavailable replicas and overloaded nodes are not.
pub fn is_refusal(db: &DbError) -> bool {
    matches!(
        db,
        DbError::SyntaxError
            | DbError::Invalid
            | DbError::Unauthorized
            | DbError::AuthenticationError
            | DbError::ConfigError
            | DbError::ProtocolError
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn datacenters(names: &[&str]) -> std::collections::BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn keyspaces(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter()
            .map(|(name, per_datacenter)| ((*name).to_owned(), *per_datacenter))
            .collect()
    }

    #[test]
    fn keyspaces_placed_per_datacenter_keep_requests_in_the_local_one() {
        let routing = datacenter_routing(
            Some("dc1"),
            &keyspaces(&[("data", true), ("committer", true)]),
            &datacenters(&["dc1", "dc2"]),
        );
        assert_eq!(
            routing,
            DatacenterRouting {
                permit_failover: false,
                warning: None
            }
        );
    }

    #[test]
    fn a_simple_strategy_keyspace_on_one_datacenter_needs_no_warning() {
        let routing = datacenter_routing(
            Some("dc1"),
            &keyspaces(&[("data", false), ("committer", true)]),
            &datacenters(&["dc1"]),
        );
        assert!(
            routing.permit_failover,
            "no other datacenter to fail over to"
        );
        assert_eq!(routing.warning, None);
    }

    #[test]
    fn a_simple_strategy_keyspace_over_several_datacenters_is_said_once_naming_them() {
        let routing = datacenter_routing(
            Some("dc1"),
            &keyspaces(&[("data", false), ("committer", false), ("other", true)]),
            &datacenters(&["dc1", "dc2", "dc3"]),
        );
        assert!(
            routing.permit_failover,
            "else some tokens have no node to go to"
        );
        let warning = routing.warning.expect("a warning");
        for part in [
            "data, committer",
            "dc1",
            "dc2, dc3",
            "NetworkTopologyStrategy",
        ] {
            assert!(warning.contains(part), "{part} in {warning}");
        }
        assert!(!warning.contains("other"), "{warning}");
    }

    #[test]
    fn without_a_local_datacenter_nothing_is_confined() {
        let routing = datacenter_routing(
            None,
            &keyspaces(&[("data", false)]),
            &datacenters(&["dc1", "dc2"]),
        );
        assert!(routing.permit_failover);
        assert_eq!(routing.warning, None);
    }
}
