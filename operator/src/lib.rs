//! The cassandra-sink operator: the `CassandraSink` custom resource and the controller that keeps
//! worker Deployments matching it.

pub mod access;
pub mod build;
pub mod committer;
pub mod controller;
pub mod crd;
pub mod in_use;
pub mod kafka;
pub mod leader;
pub mod metrics;
pub mod progress;
pub mod reason;
pub mod reconcile;
pub mod reference;
pub mod reset;
pub mod resources;
pub mod schema;
pub mod status;
pub mod validate;

use kube::CustomResourceExt;

/// Path of the generated CRD, relative to the workspace root.
pub const CRD_PATH: &str = "crds/cassandrasinks.cassandra-sink.io.yaml";

/// The CassandraSink reference page generated from the CRD.
pub const REFERENCE_PATH: &str = "docs/reference.md";

/// The reference page for the current CRD.
pub fn reference_markdown() -> String {
    let crd = serde_json::to_value(crd::CassandraSink::crd()).unwrap_or_default();
    reference::markdown(&crd)
}

/// The same CRD, shipped in the Helm chart's `crds/` folder.
pub const CHART_CRD_PATH: &str =
    "charts/cassandra-sink-operator/crds/cassandrasinks.cassandra-sink.io.yaml";

/// The CustomResourceDefinition as committed under `crds/`: a header that says how it is made, then
/// the YAML generated from the Rust types.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let body = serde_saphyr::to_string(&crd::CassandraSink::crd())?;
    Ok(format!(
        "# Generated from operator/src/crd.rs by `cargo run -p cassandra-sink-operator --bin crdgen`.\n\
         # Do not edit: a test fails when this file and the Rust types disagree.\n---\n{body}"
    ))
}

#[cfg(test)]
mod tests {
    /// The committed reference page must be what the CRD generates.
    #[test]
    fn committed_reference_matches_the_crd() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(super::REFERENCE_PATH);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = super::reference_markdown();
        assert!(
            generated.contains("| `spec.insertQuery` | string, required |"),
            "{generated}"
        );
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p cassandra-sink-operator --bin crdgen`",
            path.display()
        );
    }

    /// The committed CRDs (in crds/ and in the chart) must be what the types generate; regenerate
    /// with the crdgen binary.
    #[test]
    fn committed_crds_match_the_rust_types() {
        let generated = super::crd_yaml().expect("CRD serialises");
        for relative in [super::CRD_PATH, super::CHART_CRD_PATH] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(relative);
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == generated,
                "{} is stale: run `cargo run -p cassandra-sink-operator --bin crdgen`",
                path.display()
            );
        }
    }
}
