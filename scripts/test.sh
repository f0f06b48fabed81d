#!/usr/bin/env bash
# The test command (README, CI): brings up the local servers and the one-node Kubernetes cluster, then
# runs the format and lint checks and every test: unit, integration against real Cassandra, Kafka and
# kube-apiserver, end to end on the node (operator and workers as pods), and node loss on the local
# clusters (three Cassandra nodes and one in a second datacenter, three Kafka brokers).
#
#   scripts/test.sh                  everything
#   scripts/test.sh -- <filter>      cargo test arguments after --, e.g. `-- smoke_kafka`
#
# Servers stay up afterwards for a quick rerun (scripts/localenv.sh down stops them), except under
# CI=true, where they are stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

# Under CI the servers and the node are stopped at the end, and the node must leave nothing behind
# on the host (routes, chains, mounts, cgroups, processes): a run that leaves something fails.
stop_everything() {
  local status=$?
  scripts/localenv.sh down
  scripts/localenv.sh node-leftovers || status=1
  exit "$status"
}
if [ "${CI:-}" = "true" ]; then
  trap stop_everything EXIT
fi

step "local servers and the Kubernetes node"
scripts/localenv.sh up --node
eval "$(scripts/localenv.sh env)"

step "rustfmt"
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the previous release's worker, for the upgrade test"
scripts/previous-release.sh

step "building the worker and operator binaries the integration tests run"
cargo build -p cassandra-sink-worker -p cassandra-sink-operator --bins --locked

step "the local clusters: Cassandra nodes in two datacenters, three Kafka brokers"
scripts/localenv.sh cluster up
eval "$(scripts/localenv.sh cluster env)"

step "tests"
[ "${1:-}" = "--" ] && shift
cargo test --workspace --locked --no-fail-fast -- "$@"
