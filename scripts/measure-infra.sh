#!/usr/bin/env bash
# Measures the local infrastructure as a newcomer meets it: a fresh clone with every cache empty (Maven,
# Go modules and build cache, pip, cargo registry and target), the servers on ports of their own so it
# can run beside a developer's servers; the Kubernetes node (one per machine: its bridge, addresses
# and host paths are fixed) only while the developer's node is down. Prints Markdown tables for
# docs/infrastructure.md.
#
#   scripts/measure-infra.sh [WORKDIR]     (default: a new folder under /tmp; deleted at the end)
#
# Steps: (1) the test command cold, which includes a cold `localenv.sh up`; (2) `localenv.sh down`, then
# `up` again with everything cached (warm start); (3) the test command again (warm); (4) each server's
# resident memory after the tests.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${1:-$(mktemp -d /tmp/cassandra-sink-measure.XXXXXX)}
mkdir -p "$work"

if ip link show csink0 >/dev/null 2>&1; then
  echo "a local Kubernetes node is up: stop it first (scripts/localenv.sh down)" >&2
  exit 1
fi
git clone -q "$repo" "$work/repo"
export LOCALENV_CACHE="$work/cache" LOCALENV_STATE="$work/state"
export GOMODCACHE="$work/gomod" GOCACHE="$work/gocache" GOFLAGS=-modcacherw
export MAVEN_OPTS="-Dmaven.repo.local=$work/m2" PIP_NO_CACHE_DIR=1
export CARGO_HOME="$work/cargo" CARGO_TARGET_DIR="$work/target"
export CASSANDRA_PORT=19042 CASSANDRA_STORAGE_PORT=17000 KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093
export CASSANDRA_AUTH_PORT=19043 CASSANDRA_AUTH_STORAGE_PORT=17010 KAFKA_SASL_SSL_PORT=19094
export KAFKA_POD_PORT=19095 KAFKA_POD_SASL_SSL_PORT=19096
export ETCD_PORT=22379 ETCD_PEER_PORT=22380 APISERVER_PORT=26443
cd "$work/repo"
unset CI
trap 'scripts/localenv.sh down >/dev/null 2>&1; chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

timed() {
  local label=$1 start=$SECONDS
  shift
  "$@" >"$work/$label.log" 2>&1 || { tail -n 40 "$work/$label.log" >&2; echo "failed: $label" >&2; exit 1; }
  echo $((SECONDS - start))
}

cold_test=$(timed cold-test scripts/test.sh)
cold_up=$(sed -n 's/.*all servers ready in \([0-9]*\)s.*/\1/p' "$work/cold-test.log" | head -n 1)
cold_node=$(sed -n 's/.*node csink-node ready in \([0-9]*\)s.*/\1/p' "$work/cold-test.log" | head -n 1)
scripts/localenv.sh down >/dev/null 2>&1
warm_up=$(timed warm-up scripts/localenv.sh up --node)
warm_node=$(sed -n 's/.*node csink-node ready in \([0-9]*\)s.*/\1/p' "$work/warm-up.log" | head -n 1)
warm_test=$(timed warm-test scripts/test.sh)
passed=$(grep -o '[0-9]* passed' "$work/warm-test.log" | awk '{n+=$1} END {print n}')
node_tests=$( (time -p cargo test -q -p cassandra-sink-tests --test node --locked >"$work/node-tests.log" 2>&1) 2>&1 | awk '/^real/ {printf "%d", $2}')

printf '| step | seconds |\n| --- | --- |\n'
printf '| `scripts/test.sh`, nothing cached (includes the cold `up --node`) | %s |\n' "$cold_test"
printf '| `scripts/localenv.sh up --node` inside it, nothing cached | %s |\n' "$cold_up"
printf '| the node alone inside it (packages, kubelet/scheduler/controller-manager builds, start) | %s |\n' "$cold_node"
printf '| `scripts/localenv.sh up --node`, everything stopped, everything cached | %s (node %s) |\n' "$warm_up" "$warm_node"
printf '| `scripts/test.sh`, servers up, everything cached (%s tests passed) | %s |\n' "$passed" "$warm_test"
printf '| the end-to-end tests on the node alone, warm | %s |\n' "$node_tests"
printf '\n| server | resident memory (MiB) after the tests |\n| --- | --- |\n'
scripts/localenv.sh status | awk '/running/ {printf "| %s | %s |\n", $1, $6}'
