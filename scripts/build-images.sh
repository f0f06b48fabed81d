#!/usr/bin/env bash
# Builds the operator and worker images as OCI archives, with no container engine:
# target/images/cassandra-sink-{operator,worker}-<version>.oci.tar, named cassandra-sink-<part>:<version>
# (the chart's default image names).
#
#   scripts/build-images.sh            from release binaries (cargo build --release)
#   scripts/build-images.sh --debug    from the debug binaries the tests build (faster to build)
#   scripts/build-images.sh --import   then import them into the local node's containerd
#                                      (scripts/localenv.sh up --node), where the CRI finds them
#
# Elsewhere, import them into a runtime by hand, e.g.
# `ctr -n k8s.io images import target/images/cassandra-sink-worker-0.1.0.oci.tar`.
# With Docker, images/*.Dockerfile build the same images from source instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile=release import=false
for argument in "$@"; do
  case "$argument" in
    --debug) profile=debug ;;
    --import) import=true ;;
    *) echo "usage: scripts/build-images.sh [--debug] [--import]" >&2; exit 2 ;;
  esac
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
out=${IMAGES_DIR:-target/images}
mkdir -p "$out"
flags=(--locked -p cassandra-sink-operator -p cassandra-sink-worker --bin cassandra-sink-operator --bin cassandra-sink-worker)
[ "$profile" = release ] && flags+=(--release)
cargo build "${flags[@]}"
archives=()
for name in cassandra-sink-operator cassandra-sink-worker; do
  archive="$out/$name-$version.oci.tar"
  python3 scripts/oci_image.py "${CARGO_TARGET_DIR:-target}/$profile/$name" "$name:$version" "$archive" --port 8080
  archives+=("$archive")
done
if $import; then
  scripts/localenv.sh import "${archives[@]}"
fi
