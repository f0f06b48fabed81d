#!/usr/bin/env bash
# The main job (README): brings up real Cassandra, Kafka, etcd and kube-apiserver on this machine, then
# runs the seed's example end to end through the operator: a CassandraSink applied to the API server,
# the operator rendering the workers, the workers (local processes, as there is no kubelet here) moving
# a generated stream from Kafka into example.values exactly once with one killed -9 half-way, progress
# shown, and a final check that the table holds exactly the last value sent for every key.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

step "1/4 local servers (the first run downloads and builds them; later runs reuse them)"
scripts/localenv.sh up
eval "$(scripts/localenv.sh env)"
scripts/localenv.sh status

step "2/4 building the operator, the worker and the demo"
cargo build --locked -p cassandra-sink-operator -p cassandra-sink-worker -p cassandra-sink-tests \
  --bin cassandra-sink-operator --bin cassandra-sink-worker --bin cassandra-sink-demo

step "3/4 round trips through the clients the product uses: CQL, Kafka, a CRD on the API server, the CLIs"
cargo test -p cassandra-sink-tests --test integration --locked -- smoke_ --test-threads=2

step "4/4 the seed's example: CassandraSink -> operator -> workers, Kafka -> example.values, exactly once"
target/debug/cassandra-sink-demo

step "done"
cat <<TXT
Cassandra  $CASSANDRA_CONTACT_POINTS
Kafka      $KAFKA_BOOTSTRAP_SERVERS
Kubernetes KUBECONFIG=$KUBECONFIG   ($KUBECTL get ns)
Settings for your shell: eval "\$(scripts/localenv.sh env)"; stop the servers: scripts/localenv.sh down
TXT
