//! Writes the CassandraSink CRD generated from the Rust types to `crds/` and to the Helm chart's
//! `crds/`, and the reference page `docs/reference.md`; or the CRD to stdout with `-`.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let yaml = cassandra_sink_operator::crd_yaml()?;
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        _ => {
            for relative in [
                cassandra_sink_operator::CRD_PATH,
                cassandra_sink_operator::CHART_CRD_PATH,
            ] {
                let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(relative);
                std::fs::write(&path, &yaml)?;
                eprintln!("wrote {}", path.display());
            }
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(cassandra_sink_operator::REFERENCE_PATH);
            std::fs::write(&path, cassandra_sink_operator::reference_markdown())?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
