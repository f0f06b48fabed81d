//! Writes the CassandraSink CRD generated from the Rust types to `crds/`, or to stdout with `-`.

use std::path::Path;

fn main() -> anyhow::Result<()> {
    let yaml = cassandra_sink_operator::crd_yaml()?;
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        _ => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(cassandra_sink_operator::CRD_PATH);
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
