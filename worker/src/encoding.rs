//! How record keys and values are encoded: JSON (the default) or Avro in the Confluent wire format,
//! whose schemas a schema registry keeps. The settings, and their check before anything connects.
//!
//! The decoding itself is [`crate::avro`] (pure) and [`crate::registry`] (the registry's HTTP API).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Credentials, KafkaSource, TlsConfig};

/// How a record's key or value is encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RecordFormat {
    /// JSON: field paths (`value.<field>…`) read into a JSON document; `value` (or `key`) alone is
    /// the raw bytes.
    #[default]
    Json,
    /// Avro in the Confluent wire format (a zero byte, a 4-byte schema id, Avro binary), decoded with
    /// the schema the id names in `schemaRegistry`; field paths read into the decoded record.
    Avro,
}

impl RecordFormat {
    /// True for the default, which configurations leave out.
    pub fn is_json(&self) -> bool {
        *self == RecordFormat::Json
    }
}

/// A schema registry with the Confluent API (Confluent Schema Registry, Apicurio Registry's
/// `/apis/ccompat/v7`, Karapace, Redpanda).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchemaRegistry {
    /// Base URL of the API, e.g. `http://registry.kafka.svc:8080/apis/ccompat/v7` (Apicurio) or
    /// `https://schema-registry:8081` (Confluent).
    pub url: String,
    /// HTTP basic authentication, read when connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// TLS towards an `https://` registry: a CA bundle (the system's roots when absent) and a
    /// client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// The schema records are read into.
    #[serde(default)]
    pub reader_schema: ReaderSchema,
}

/// The schema an Avro record is read into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ReaderSchema {
    /// The schema the record was written with: a field its writer did not have is missing (its
    /// column is left unset).
    #[default]
    Writer,
    /// The newest version of the record's subject (`<topic>-value`, `<topic>-key`), looked up when
    /// the worker first meets a schema id: a record written before a field was added reads the
    /// field's default (Avro schema resolution).
    Latest,
}

/// A format setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// Avro without a registry to resolve schema ids.
    #[error(
        "source.kafka.{field} is avro but source.kafka.schemaRegistry is not set: an Avro record \
         names its schema by an id that only the registry resolves"
    )]
    AvroWithoutRegistry {
        /// `valueFormat` or `keyFormat`.
        field: &'static str,
    },
    /// A registry that nothing reads through.
    #[error(
        "source.kafka.schemaRegistry is set but neither source.kafka.valueFormat nor keyFormat is \
         avro"
    )]
    RegistryUnused,
    /// A URL the worker cannot use.
    #[error("source.kafka.schemaRegistry.url `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Checks the formats and the registry of a Kafka source.
pub fn check(kafka: &KafkaSource) -> Result<(), EncodingError> {
    check_formats(
        kafka.value_format,
        kafka.key_format,
        kafka
            .schema_registry
            .as_ref()
            .map(|registry| (registry.url.as_str(), registry.tls.is_some())),
    )
}

/// Checks formats and a registry given by its URL and whether TLS settings come with it (the
/// operator's spec names TLS by Secret, the worker's configuration by file).
pub fn check_formats(
    value: RecordFormat,
    key: RecordFormat,
    registry: Option<(&str, bool)>,
) -> Result<(), EncodingError> {
    let avro = [("valueFormat", value), ("keyFormat", key)]
        .into_iter()
        .find(|(_, format)| *format == RecordFormat::Avro);
    match (registry, avro) {
        (None, Some((field, _))) => Err(EncodingError::AvroWithoutRegistry { field }),
        (Some(_), None) => Err(EncodingError::RegistryUnused),
        (Some((url, tls)), Some(_)) => check_url(url, tls),
        (None, None) => Ok(()),
    }
}

fn check_url(url: &str, tls: bool) -> Result<(), EncodingError> {
    let refuse = |reason| {
        Err(EncodingError::Url {
            url: url.to_owned(),
            reason,
        })
    };
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if tls {
            return refuse("`tls` is set but the URL is http://; use https://");
        }
        rest
    } else {
        return refuse("must start with http:// or https://");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return refuse("names no host");
    }
    if url.contains(['?', '#']) || host.contains('@') {
        return refuse(
            "must be a base URL without query, fragment or user (credentials go in `credentials`)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(value: RecordFormat, key: RecordFormat, url: Option<&str>) -> KafkaSource {
        KafkaSource {
            bootstrap_servers: vec!["kafka:9092".into()],
            topic: Some("orders".into()),
            topics: Vec::new(),
            topic_pattern: None,
            group_id: None,
            security: None,
            properties: Default::default(),
            value_format: value,
            key_format: key,
            schema_registry: url.map(|url| SchemaRegistry {
                url: url.to_owned(),
                credentials: None,
                tls: None,
                reader_schema: ReaderSchema::Writer,
            }),
        }
    }

    #[test]
    fn avro_needs_a_registry_and_a_registry_needs_avro() {
        use RecordFormat::{Avro, Json};
        assert_eq!(check(&source(Json, Json, None)), Ok(()));
        assert_eq!(
            check(&source(Avro, Json, Some("http://registry:8080"))),
            Ok(())
        );
        assert_eq!(
            check(&source(Json, Avro, Some("https://r/apis/ccompat/v7"))),
            Ok(())
        );
        assert_eq!(
            check(&source(Avro, Json, None)),
            Err(EncodingError::AvroWithoutRegistry {
                field: "valueFormat"
            })
        );
        assert_eq!(
            check(&source(Json, Avro, None)),
            Err(EncodingError::AvroWithoutRegistry { field: "keyFormat" })
        );
        assert_eq!(
            check(&source(Json, Json, Some("http://registry:8080"))),
            Err(EncodingError::RegistryUnused)
        );
    }

    #[test]
    fn a_registry_url_is_an_http_base_url_with_a_host() {
        use RecordFormat::{Avro, Json};
        for bad in [
            "registry:8080",
            "ftp://r",
            "http://",
            "http:///x",
            "http://r?x=1",
            "https://u:p@r",
        ] {
            let error = check(&source(Avro, Json, Some(bad))).expect_err(bad);
            assert!(matches!(error, EncodingError::Url { .. }), "{bad}: {error}");
            assert!(error.to_string().contains(bad), "{error}");
        }
        let mut tls_over_http = source(Avro, Json, Some("http://r:8080"));
        if let Some(registry) = &mut tls_over_http.schema_registry {
            registry.tls = Some(TlsConfig {
                ca_file: None,
                cert_file: None,
                key_file: None,
                verify_hostname: true,
            });
        }
        assert!(check(&tls_over_http).is_err());
    }
}
