#!/usr/bin/env bash
# Operator scale benchmark: 1,000 CassandraSinks on the local API server, latency from a spec change to
# the Deployment applied, and the operator's peak RSS (release build). Prints a Markdown table.
#
#   scripts/bench-operator.sh [-- --sinks N --changes M]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/localenv.sh up
eval "$(scripts/localenv.sh env)"
cargo build --release --locked -p cassandra-sink-operator -p cassandra-sink-tests \
  --bin cassandra-sink-operator --bin cassandra-sink-operator-bench
[ "${1:-}" = "--" ] && shift
printf 'machine: %s cores, %s, %s\n' "$(nproc)" "$(free -g | awk '/Mem:/ {print $2 " GiB"}')" "$(date -u +%F)" >&2
target=${CARGO_TARGET_DIR:-target}/release
exec "$target/cassandra-sink-operator-bench" --operator "$target/cassandra-sink-operator" "$@"
