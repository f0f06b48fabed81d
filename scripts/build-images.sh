#!/usr/bin/env bash
# Builds the operator and worker images as OCI archives from the release binaries, with no container
# engine: images/cassandra-sink-{operator,worker}-<version>.oci.tar. Import them into a local runtime,
# e.g. `ctr -n k8s.io images import images/cassandra-sink-worker-0.1.0.oci.tar`.
# With Docker, images/*.Dockerfile build the same images from source instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=${IMAGES_DIR:-target/images}
mkdir -p "$out"
cargo build --release --locked -p cassandra-sink-operator -p cassandra-sink-worker \
  --bin cassandra-sink-operator --bin cassandra-sink-worker
for name in cassandra-sink-operator cassandra-sink-worker; do
  python3 scripts/oci_image.py "target/release/$name" "$name:$version" "$out/$name-$version.oci.tar" --port 8080
done
