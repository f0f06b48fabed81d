//! The schema registry's HTTP API (Confluent's, which Apicurio, Karapace and Redpanda also serve):
//! a schema by id (`GET /schemas/ids/{id}`) and a subject's newest version
//! (`GET /subjects/{subject}/versions/latest`).
//!
//! Before a checkpoint is bound, every schema id its records name is looked up once ([`Registry::
//! prepare`]) and kept for the life of the worker: a registry never gives an id another schema, so
//! binding stays a pure function of the records ([`crate::avro::Schemas`]).
//!
//! Failures: an id the registry does not know (404) or a schema that is not Avro makes the records
//! naming it invalid; refused credentials (401, 403) stop the worker, as nothing can be read; anything
//! else (unreachable, 5xx, a timeout) is asked again until it answers, and the checkpoint waits.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, header};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::avro::{Entry, Formats, Part, Resolved, Schemas};
use crate::cassandra::{ConnectError, TlsMaterial, read_secret, tls_config};
use crate::config::{ReaderSchema, SchemaRegistry};
use crate::mapping::SourceRecord;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Errors talking to the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A credential file or variable could not be read.
    #[error("cannot read the schema registry {what} from {source_name}: {reason}")]
    Secret {
        /// `username` or `password`.
        what: &'static str,
        /// The file or variable (never its value).
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A TLS file is missing or malformed.
    #[error("schema registry TLS: {0}")]
    Tls(String),
    /// The request did not reach the registry, or no answer came.
    #[error("schema registry: GET {url}: {source}")]
    Request {
        /// The URL asked.
        url: String,
        /// The client's error.
        source: hyper_util::client::legacy::Error,
    },
    /// The answer's body broke off.
    #[error("schema registry: GET {url}: reading the answer: {source}")]
    Body {
        /// The URL asked.
        url: String,
        /// The HTTP error.
        source: hyper::Error,
    },
    /// No answer within the request timeout.
    #[error("schema registry: GET {url}: no answer within {REQUEST_TIMEOUT:?}")]
    Timeout {
        /// The URL asked.
        url: String,
    },
    /// The registry answered with an error status.
    #[error("schema registry answered {status} to GET {url}: {body}")]
    Status {
        /// The URL asked.
        url: String,
        /// The status.
        status: StatusCode,
        /// The start of the body (the registry's own message).
        body: String,
    },
    /// The answer is not the JSON of the Confluent API.
    #[error("schema registry: GET {url}: the answer is not the Confluent API's JSON: {source}")]
    Answer {
        /// The URL asked.
        url: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}

impl RegistryError {
    /// True when asking again cannot help until a person changes something: credentials the
    /// registry refuses, or a secret or TLS file that cannot be read.
    pub fn is_permanent(&self) -> bool {
        match self {
            RegistryError::Secret { .. } | RegistryError::Tls(_) => true,
            RegistryError::Status { status, .. } => {
                matches!(*status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
            }
            _ => false,
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    fn from_connect(error: ConnectError) -> Self {
        match error {
            ConnectError::Secret {
                what,
                source_name,
                reason,
            } => RegistryError::Secret {
                what,
                source_name,
                reason,
            },
            ConnectError::Tls(reason) => RegistryError::Tls(reason),
            other => RegistryError::Tls(other.to_string()),
        }
    }
}

/// The part of the Confluent API's answers the worker reads.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaAnswer {
    schema: String,
    /// Absent for Avro.
    #[serde(default)]
    schema_type: Option<String>,
}

/// A registry client and the schemas looked up so far.
pub struct Registry {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    authorization: Option<header::HeaderValue>,
    reader: ReaderSchema,
    schemas: Mutex<Arc<Schemas>>,
}

impl Registry {
    /// A client for `config`, reading its credentials and TLS files now.
    pub fn new(config: &SchemaRegistry, formats: Formats) -> Result<Self, RegistryError> {
        let authorization = match &config.credentials {
            Some(credentials) => {
                let user = read_secret("username", &credentials.username)
                    .map_err(RegistryError::from_connect)?;
                let password = read_secret("password", &credentials.password)
                    .map_err(RegistryError::from_connect)?;
                Some(basic_authorization(&user, &password)?)
            }
            None => None,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match config.tls.as_ref().filter(|tls| tls.ca_file.is_some()) {
            Some(tls) => {
                let material = TlsMaterial::from_files(tls).map_err(RegistryError::from_connect)?;
                builder.with_tls_config(tls_config(&material).map_err(RegistryError::from_connect)?)
            }
            // The crypto provider named, as the rest of the worker does: rustls picks none by itself.
            None => builder
                .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                .map_err(|error| RegistryError::Tls(format!("the system's CA roots: {error}")))?,
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: config.url.trim_end_matches('/').to_owned(),
            authorization,
            reader: config.reader_schema,
            schemas: Mutex::new(Arc::new(Schemas::new(formats))),
        })
    }

    /// Asks the registry for its subjects, to find refused credentials or a wrong URL before any
    /// record is read.
    pub async fn check(&self) -> Result<(), RegistryError> {
        self.get::<serde_json::Value>("/subjects").await.map(|_| ())
    }

    /// [`Registry::check`], waiting out a registry that does not answer yet.
    pub async fn check_patiently(&self) -> Result<(), RegistryError> {
        self.patiently(|| self.check()).await
    }

    /// Looks up every schema the records name that is not known yet, and returns the schemas to
    /// decode them with. Returns only when each has an answer (a schema, or a reason its records are
    /// invalid), or with a permanent error.
    pub async fn prepare<'r>(
        &self,
        records: impl Iterator<Item = SourceRecord<'r>>,
    ) -> Result<Arc<Schemas>, RegistryError> {
        let known = self.lock().clone();
        let missing: BTreeSet<(&str, Part, u32)> = records
            .flat_map(|record| {
                known
                    .missing(&record)
                    .map(move |(part, id)| (record.topic, part, id))
            })
            .collect();
        if missing.is_empty() {
            return Ok(known);
        }
        let mut found = Vec::with_capacity(missing.len());
        for (topic, part, id) in missing {
            let subject = part.subject(topic);
            let entry = self.patiently(|| self.resolve(&subject, id)).await?;
            if let Err(reason) = &entry {
                tracing::warn!(%subject, id, %reason, "records naming this schema are invalid");
            }
            found.push((topic.to_owned(), part, id, entry));
        }
        let mut schemas = self.lock();
        let mut next = Schemas::clone(&schemas);
        for (topic, part, id, entry) in found {
            next.insert(topic, part, id, entry);
        }
        *schemas = Arc::new(next);
        Ok(schemas.clone())
    }

    /// What an id of a subject resolves to; `Ok(Err(reason))` when its records cannot be read.
    async fn resolve(&self, subject: &str, id: u32) -> Result<Entry, RegistryError> {
        let writer: SchemaAnswer = match self.get(&format!("/schemas/ids/{id}")).await {
            Ok(answer) => answer,
            Err(error) if error.is_not_found() => {
                return Ok(Err("the registry has no schema with this id".to_owned()));
            }
            Err(error) => return Err(error),
        };
        if let Some(kind) = writer.schema_type.as_deref().filter(|kind| *kind != "AVRO") {
            return Ok(Err(format!("a {kind} schema, not Avro")));
        }
        let reader = match self.reader {
            ReaderSchema::Writer => None,
            ReaderSchema::Latest => {
                let path = format!("/subjects/{}/versions/latest", encode_segment(subject));
                match self.get::<SchemaAnswer>(&path).await {
                    Ok(latest) => Some(latest.schema),
                    // A subject the registry does not list: records are read as written.
                    Err(error) if error.is_not_found() => None,
                    Err(error) => return Err(error),
                }
            }
        };
        Ok(Resolved::parse(&writer.schema, reader.as_deref())
            .map(Arc::new)
            .map_err(|error| format!("the registry's schema does not parse: {error}")))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::get(&url).header(
            header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization.clone());
        }
        let request = request
            .body(Empty::new())
            .map_err(|_| RegistryError::Status {
                url: url.clone(),
                status: StatusCode::BAD_REQUEST,
                body: "not a valid request URL".to_owned(),
            })?;
        let exchange =
            async {
                let response = self.client.request(request).await.map_err(|source| {
                    RegistryError::Request {
                        url: url.clone(),
                        source,
                    }
                })?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|source| RegistryError::Body {
                        url: url.clone(),
                        source,
                    })?
                    .to_bytes();
                Ok::<_, RegistryError>((status, body))
            };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| RegistryError::Timeout { url: url.clone() })??;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(RegistryError::Status {
                url,
                status,
                body: text.chars().take(300).collect(),
            });
        }
        serde_json::from_slice(&body).map_err(|source| RegistryError::Answer { url, source })
    }

    /// Runs `attempt` until it succeeds or fails for good, pausing longer after each transient
    /// failure.
    async fn patiently<T, F, Fut>(&self, mut attempt: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut pause = Duration::from_millis(500);
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_permanent() => return Err(error),
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?pause, "schema registry unavailable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Schemas>> {
        // The map is replaced whole under the lock, so a panic elsewhere cannot leave it half-written.
        self.schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `Authorization` header of HTTP basic authentication.
fn basic_authorization(user: &str, password: &str) -> Result<header::HeaderValue, RegistryError> {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = header::HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
        RegistryError::Secret {
            what: "credentials",
            source_name: "the configured username and password".to_owned(),
            reason: "they make no valid HTTP header".to_owned(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A subject as one URL path segment: topic names hold letters, digits, `.`, `_` and `-`, which
/// need no escaping; anything else is percent-encoded.
fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_authorization_is_the_base64_of_user_colon_password_and_stays_out_of_logs() {
        let value = basic_authorization("sink", "s3cret:x").expect("header");
        assert_eq!(value.to_str().expect("ascii"), "Basic c2luazpzM2NyZXQ6eA==");
        assert!(value.is_sensitive());
        assert!(
            basic_authorization("a\nb", "p").is_ok(),
            "base64 hides the newline"
        );
    }

    #[test]
    fn only_refused_credentials_and_unreadable_files_are_permanent() {
        let status = |status| RegistryError::Status {
            url: "u".into(),
            status,
            body: String::new(),
        };
        assert!(status(StatusCode::UNAUTHORIZED).is_permanent());
        assert!(status(StatusCode::FORBIDDEN).is_permanent());
        assert!(!status(StatusCode::SERVICE_UNAVAILABLE).is_permanent());
        assert!(!status(StatusCode::NOT_FOUND).is_permanent());
        assert!(status(StatusCode::NOT_FOUND).is_not_found());
        assert!(!RegistryError::Timeout { url: "u".into() }.is_permanent());
        assert!(RegistryError::Tls("x".into()).is_permanent());
    }

    /// Answers one HTTP request on a loopback port: 200 with `body` when the request carries
    /// `expected` as its Authorization header, 401 otherwise. Returns the base URL.
    async fn one_answer(expected: &'static str, body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let read = stream.read(&mut buffer).await.expect("read");
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
            }
            let head = String::from_utf8_lossy(&request).to_lowercase();
            let authorized = head.contains(&format!("authorization: {}", expected.to_lowercase()));
            let (status, body) = if authorized {
                ("200 OK", body)
            } else {
                ("401 Unauthorized", "{\"error_code\":401}")
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.expect("write");
        });
        format!("http://{address}")
    }

    /// Registry settings with basic-auth credentials read from files, as a mounted Secret gives them.
    fn settings(url: String, password: &str) -> SchemaRegistry {
        let dir = std::env::temp_dir().join(format!(
            "registry-credentials-{}-{password}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("folder");
        std::fs::write(dir.join("username"), "sink\n").expect("username");
        std::fs::write(dir.join("password"), format!("{password}\n")).expect("password");
        SchemaRegistry {
            url,
            credentials: Some(crate::config::Credentials {
                username: crate::config::SecretSource::File(dir.join("username")),
                password: crate::config::SecretSource::File(dir.join("password")),
            }),
            tls: None,
            reader_schema: ReaderSchema::Writer,
        }
    }

    const FORMATS: Formats = Formats {
        key: crate::config::RecordFormat::Json,
        value: crate::config::RecordFormat::Avro,
    };

    #[tokio::test]
    async fn credentials_from_files_go_as_basic_auth_and_a_refusal_is_permanent() {
        // "sink:s3cret" in base64.
        let expected = "Basic c2luazpzM2NyZXQ=";
        let accepted = Registry::new(
            &settings(one_answer(expected, "[]").await, "s3cret"),
            FORMATS,
        )
        .expect("client");
        accepted
            .check()
            .await
            .expect("the registry accepts the credentials");

        let refused = Registry::new(
            &settings(one_answer(expected, "[]").await, "wrong"),
            FORMATS,
        )
        .expect("client");
        let error = refused.check().await.expect_err("refused");
        assert!(error.is_permanent(), "{error}");
        assert!(error.to_string().contains("401"), "{error}");
        // Permanent: the patient check gives up at once instead of waiting.
        let refused_again = Registry::new(
            &settings(one_answer(expected, "[]").await, "wrong"),
            FORMATS,
        )
        .expect("client");
        let patient = tokio::time::timeout(Duration::from_secs(5), refused_again.check_patiently())
            .await
            .expect("no waiting on a refusal");
        assert!(patient.is_err());
    }

    #[test]
    fn an_unreadable_credentials_file_is_named_and_permanent() {
        let mut config = settings("http://127.0.0.1:9".into(), "x");
        if let Some(credentials) = &mut config.credentials {
            credentials.password =
                crate::config::SecretSource::File("/nonexistent/password".into());
        }
        let error = Registry::new(&config, FORMATS).err().expect("refused");
        assert!(error.is_permanent());
        assert!(
            error.to_string().contains("/nonexistent/password"),
            "{error}"
        );
        assert!(
            error.to_string().contains("schema registry password"),
            "{error}"
        );
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode_segment("orders.v1_x-value"), "orders.v1_x-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
